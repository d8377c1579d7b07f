"""Tests of the training recipes: engine, data, objectives, CLI and published weights."""
