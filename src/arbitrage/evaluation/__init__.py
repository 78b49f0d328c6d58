"""Evaluation harness: datasets, grading, evaluation runs and their summaries."""
