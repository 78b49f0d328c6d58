"""Evaluation harness: datasets, evaluation runs, their summaries, sweeps and reports.

Answers are graded by :mod:`arbitrage.grading`, which stands below every package that solves.
"""
