"""fraud against the ULB handbook's published figures, on the handbook's own protocol.

Handbook (Le Borgne et al., chapter 5, XGBoost, one week of training from 2018-07-25, 7 days of
delay, test 2018-08-08..14, cards known compromised removed): ROC AUC 0.869, average precision
0.687, card precision@100 0.303. This script trains finbento's fraud features and parameters on the
same windows of the full simulated data (../shared/data/card_transactions_sim) and on longer
training windows ending at the same day, and prints the three figures for each.

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
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FULL = ROOT.parent / "shared" / "data" / "card_transactions_sim" / \
    "transactions_2018-04_2018-08.parquet"  # fmt: skip
HANDBOOK = {"roc_auc": 0.869, "average_precision": 0.687, "card_precision_at_100": 0.303}


def main() -> int:
    from finbento.datasets import load_transactions
    from finbento.features.transactions import FEATURES, offline_features
    from trainers.evaluation import binary_metrics
    from trainers.fraud import PARAMS
    from trainers.time_split import card_precision_at_k, time_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FULL)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"{args.data} not found: the comparison needs the full simulated data")
        return 0
    t0 = time.time()
    df = load_transactions(args.data)
    features = offline_features(df).to_numpy(np.float32)
    y = df["tx_fraud"].to_numpy()
    print(f"{len(df):,} transactions, features in {time.time() - t0:.1f} s")
    header = ("training window", "n train", "n test", "ROC AUC", "AP", "CP@100")
    print("{:>16} {:>8} {:>7} {:>8} {:>7} {:>7}".format(*header))
    print(
        f"{'handbook (1 wk)':>16} {'':>8} {'':>7} {HANDBOOK['roc_auc']:>8.3f} "
        f"{HANDBOOK['average_precision']:>7.3f} {HANDBOOK['card_precision_at_100']:>7.3f}"
    )
    results = []
    for weeks in (1,) if args.short else (1, 6):
        split = time_split(df, train_days=7 * weeks, validation_days=0, test_days=7,
                           test_end="2018-08-15")  # fmt: skip
        booster = xgb.train({**PARAMS, "seed": 0, "nthread": 2},
                            xgb.DMatrix(features[split.train], label=y[split.train],
                                        feature_names=list(FEATURES)), args.rounds)  # fmt: skip
        p = booster.inplace_predict(features[split.test])
        m = binary_metrics(y[split.test], p)
        cp, _ = card_precision_at_k(
            split.day[split.test], df["customer_id"].to_numpy()[split.test], p, y[split.test]
        )
        row = {
            "train_weeks": weeks,
            "n_train": int(split.train.sum()),
            "n_test": int(split.test.sum()),
            "roc_auc": m["roc_auc"],
            "average_precision": m["average_precision"],
            "card_precision_at_100": cp,
        }
        results.append(row)
        print(
            f"{f'finbento ({weeks} wk)':>16} {row['n_train']:>8} {row['n_test']:>7} "
            f"{row['roc_auc']:>8.3f} {row['average_precision']:>7.3f} {cp:>7.3f}"
        )
    out = ROOT / "bench" / "results" / "fraud_handbook.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"handbook": HANDBOOK, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
