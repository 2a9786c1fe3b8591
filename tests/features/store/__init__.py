"""Tests of mer_features.store."""
