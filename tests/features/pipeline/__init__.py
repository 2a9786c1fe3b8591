"""Tests of mer_features.pipeline."""
