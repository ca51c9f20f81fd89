"""How noisy is the scikit-learn reference in testdata/odds/baseline.json?

baseline.json gives, per data set, scikit-learn's mean ROC-AUC over seeds 0..4 (100 trees,
max_samples=min(256, n), fit and score all rows). This script refits scikit-learn with seeds
0..N-1 and reports, per data set, the mean over all N seeds and how many of scikit-learn's own
blocks of five seeds (0..4, 5..9, ...) fall more than 0.01 below the baseline value -- i.e.
how often scikit-learn itself would fail the acceptance criterion "mean over five seeds >=
baseline - 0.01".

Usage: python bench/sklearn_seed_noise.py [N_SEEDS=40] > testdata/odds/sklearn_seed_noise.json
(the committed file was made with 40 seeds, scikit-learn 1.9.1, numpy 2.x, on this project's
shared machine; the accuracy test reads it).
"""
import gzip
import json
import os
import sys

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

ROOT = os.path.join(os.path.dirname(__file__), "..", "testdata", "odds")


def load(name):
    path = os.path.join(ROOT, name + ".csv")
    opener = open if os.path.exists(path) else gzip.open
    with opener(path if os.path.exists(path) else path + ".gz", "rt") as f:
        data = np.loadtxt(f, delimiter=",", skiprows=1)
    return data[:, :-1].astype(np.float32), data[:, -1]


def main():
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    baseline = json.load(open(os.path.join(ROOT, "baseline.json")))["datasets"]
    out = {}
    for name, ref in baseline.items():
        X, y = load(name)
        aucs = []
        for seed in range(n_seeds):
            model = IsolationForest(n_estimators=100, random_state=seed).fit(X)
            aucs.append(roc_auc_score(y, -model.score_samples(X)))
        aucs = np.array(aucs)
        target = ref["sk100"]["roc_auc_mean"] - 0.01
        blocks = aucs[: n_seeds // 5 * 5].reshape(-1, 5).mean(axis=1)
        out[name] = {
            "baseline_first5": ref["sk100"]["roc_auc_mean"],
            "sklearn_mean": round(float(aucs.mean()), 4),
            "sklearn_std": round(float(aucs.std()), 4),
            "seeds": n_seeds,
            "sklearn_blocks_below_target": int((blocks < target).sum()),
            "blocks": len(blocks),
        }
        print(name, out[name], file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
