"""Metrics, prediction log, drift checks and alerting (issues 7 and 8)."""
