"""Tests of mer_features.encoders."""
