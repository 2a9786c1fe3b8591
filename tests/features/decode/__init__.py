"""Tests of mer_features.decode."""
