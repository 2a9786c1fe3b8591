"""Tests of mer_features.demo."""
