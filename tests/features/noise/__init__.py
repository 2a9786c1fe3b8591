"""Tests of mer_features.noise."""
