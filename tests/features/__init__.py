"""Tests of mer_features, one package per stage (packages, so that test modules here and in
tests/heads never clash; tests/conftest.py stays importable as ``conftest``)."""
