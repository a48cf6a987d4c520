"""The APScheduler retraining daemon and its jobs (issue 7): drift, retrain, gate, rebuild."""
