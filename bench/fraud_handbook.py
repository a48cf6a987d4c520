"""fraud against the ULB handbook's published figures, on the handbook's own protocol.

What the handbook publishes (Le Borgne et al., *Reproducible machine learning for credit card
fraud detection*, same simulated data, 15 baseline features):

- chapter 5 (ModelSelection.ipynb), the figures usually quoted: the MEAN over 4 prequential test
  folds. Each fold trains on one week starting 2018-07-25, 08-01, 08-08 or 08-15, leaves 7 days of
  delay and tests on the following week, cards known to be compromised removed. XGBoost
  ROC AUC 0.869, average precision 0.687, card precision@100 0.303; random forest 0.870 / 0.678 /
  0.299. The handbook's data runs to 2018-09-30; ours ends 2018-08-31, so the 08-15 fold's test
  week holds only its first 3 days (the script prints the day count and also the mean of the 3
  full folds).
- chapter 3 (BaselineModeling.ipynb), one fold only: train 2018-07-25 for one week, test
  2018-08-08..14. XGBoost 0.862 / 0.639 / 0.273, random forest 0.867 / 0.658 / 0.287.

This script trains finbento's model (trainers/fraud.PARAMS, finbento's offline features) on the
same folds of the full simulated data (../shared/data/card_transactions_sim), with one week of
training and with six weeks ending on the same day, and prints each fold, the 07-25 fold, the
4-fold mean and the 3-full-fold mean. The number of boosting rounds is fixed per window (100 for
one week, 300 for six; ``--rounds`` overrides), chosen by mean average precision on the handbook's
4 validation folds (one-week training from 2018-06-20, 06-27, 07-04, 07-11, test weeks before
2018-08-01, never on the test folds): the handbook's windows leave no week for early stopping,
which trainers/fraud.py uses on its own 6-week split.

    python bench/fraud_handbook.py            # one-week and six-week training windows
    python bench/fraud_handbook.py --short    # one-week only (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FULL = ROOT.parent / "shared" / "data" / "card_transactions_sim" / \
    "transactions_2018-04_2018-08.parquet"  # fmt: skip
METRICS = ("roc_auc", "average_precision", "card_precision_at_100")
REFERENCE = {
    "handbook ch.5 XGBoost, 4-fold mean": (0.869, 0.687, 0.303),
    "handbook ch.5 random forest, 4-fold mean": (0.870, 0.678, 0.299),
    "handbook ch.3 XGBoost, 07-25 fold": (0.862, 0.639, 0.273),
    "handbook ch.3 random forest, 07-25 fold": (0.867, 0.658, 0.287),
}
# Handbook chapter 5: start_date_training_for_test = 2018-07-25 + 3 weeks, n_folds = 4, each fold
# one week earlier; one week of training, 7 days of delay, one week of test.
FOLD_STARTS = ("2018-08-15", "2018-08-08", "2018-08-01", "2018-07-25")
SINGLE_FOLD = "2018-07-25"  # chapter 3's window
WEEK, DELAY = 7, 7
ROUNDS = {1: 100, 6: 300}  # training weeks -> boosting rounds, chosen on the validation folds


def mean(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def main() -> int:
    from finbento.datasets import load_transactions
    from finbento.features.transactions import FEATURES, offline_features
    from trainers.evaluation import binary_metrics
    from trainers.fraud import PARAMS
    from trainers.time_split import card_precision_at_k, time_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FULL)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--rounds", type=int, help="boosting rounds (default: ROUNDS)")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"{args.data} not found: the comparison needs the full simulated data")
        return 0
    t0 = time.time()
    df = load_transactions(args.data)
    features = offline_features(df).to_numpy(np.float32)
    y = df["tx_fraud"].to_numpy()
    customer = df["customer_id"].to_numpy()
    print(f"{len(df):,} transactions, features in {time.time() - t0:.1f} s; trainers/fraud.PARAMS")
    row_format = "{:<44} {:>8} {:>7} {:>5} {:>8} {:>7} {:>7}"
    print(row_format.format("", "n train", "n test", "days", "ROC AUC", "AP", "CP@100"))

    def line(label: str, m: dict, n_train: object = "", n_test: object = "", days: object = ""):
        print(row_format.format(label, n_train, n_test, days, f"{m['roc_auc']:.3f}",
                                f"{m['average_precision']:.3f}",
                                f"{m['card_precision_at_100']:.3f}"))  # fmt: skip

    for label, ref in REFERENCE.items():
        line(label, dict(zip(METRICS, ref, strict=True)))
    results = []
    for weeks in (1,) if args.short else (1, 6):
        rounds = args.rounds or ROUNDS[weeks]
        print(f"-- {weeks} week(s) of training, {rounds} rounds")
        folds = []
        for start in FOLD_STARTS:
            # training ends where the handbook's one-week window ends; test_end is exclusive
            test_end = pd.Timestamp(start) + pd.Timedelta(days=WEEK + DELAY + WEEK)
            split = time_split(df, train_days=WEEK * weeks, validation_days=0, test_days=WEEK,
                               delay_days=DELAY, test_end=str(test_end.date()))  # fmt: skip
            booster = xgb.train({**PARAMS, "seed": 0, "nthread": 2},
                                xgb.DMatrix(features[split.train], label=y[split.train],
                                            feature_names=list(FEATURES)), rounds)  # fmt: skip
            p = booster.inplace_predict(features[split.test])
            cp, per_day = card_precision_at_k(
                split.day[split.test], customer[split.test], p, y[split.test]
            )
            fold = {
                "fold": start,
                "train_start": split.calendar["train"].split("..")[0],
                "test": split.calendar["test"].split("..")[0],
                "test_days": len(per_day),
                "n_train": int(split.train.sum()),
                "n_test": int(split.test.sum()),
                **{k: binary_metrics(y[split.test], p)[k] for k in METRICS[:2]},
                "card_precision_at_100": cp,
            }
            folds.append(fold)
            line(f"finbento {weeks} wk, train {fold['train_start']}, test {fold['test']}", fold,
                 fold["n_train"], fold["n_test"], fold["test_days"])  # fmt: skip
        full = [f for f in folds if f["test_days"] == WEEK]
        single = folds[FOLD_STARTS.index(SINGLE_FOLD)]
        summary = {
            "fold_2018_07_25": {k: single[k] for k in METRICS},
            "mean_4_folds": mean(folds),
            f"mean_{len(full)}_full_folds": mean(full),
        }
        line(f"finbento {weeks} wk, fold 07-25 (test 08-08, ch.3)", summary["fold_2018_07_25"])
        line(f"finbento {weeks} wk, mean of 4 folds (ch.5)", summary["mean_4_folds"])
        line(f"finbento {weeks} wk, mean of {len(full)} full folds", mean(full))
        results.append({"train_weeks": weeks, "rounds": rounds, "folds": folds, **summary})
    out = ROOT / "bench" / "results" / "fraud_handbook.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    reference = {k: dict(zip(METRICS, v, strict=True)) for k, v in REFERENCE.items()}
    out.write_text(json.dumps({"handbook": reference, "params": PARAMS,
                               "results": results}, indent=2))  # fmt: skip
    print(f"wrote {out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
