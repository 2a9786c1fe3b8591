"""Tests of mer_features.corpora."""
