"""Per-row scikit-learn scores for the scikit-learn random stream's test.

anomalyd's `RandomStream::ScikitLearn` (`--random-stream scikit-learn`) claims to grow, for
a seed, the same trees as `sklearn.ensemble.IsolationForest(random_state=seed)`. This script
fits scikit-learn on a few of the shared ODDS sets (100 trees, max_samples=min(256, n), all
rows, as in baseline.json; once also with a feature subset per tree) and writes its anomaly scores (-score_samples) per row; the engine
test `scikit_learn_stream_reproduces_scikit_learn_scores` compares anomalyd's against them.

Usage: python bench/sklearn_reference_scores.py > testdata/odds/sklearn_scores.json
(committed output: scikit-learn 1.9.1, numpy 2.4.6).
"""
import json
import os
import sys

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest

sys.path.insert(0, os.path.dirname(__file__))
from sklearn_seed_noise import load  # noqa: E402

# Small and mid-sized sets: every sampling regime of scikit-learn's row draw except the
# large-data one (checked through baseline.json's accuracy instead), with integer (letter,
# breastw), continuous (cardio, ionosphere) and constant-heavy (lympho) features.
SETS = ["breastw", "cardio", "ionosphere", "letter", "lympho", "glass"]
SEEDS = [0, 3]
# Feature subsets (max_features < 1): scikit-learn's bagging draws them before the rows.
SUBSET_SETS = {"cardio": 0.5}


def main():
    out = {"scikit_learn": sklearn.__version__, "numpy": np.__version__, "sets": {}}
    for name in SETS:
        x, _ = load(name)
        x = x.astype(np.float32)
        per_seed = {}
        for seed in SEEDS:
            model = IsolationForest(n_estimators=100, max_samples=min(256, len(x)), random_state=seed)
            model.fit(x)
            per_seed[str(seed)] = [round(float(s), 7) for s in -model.score_samples(x)]
        out["sets"][name] = per_seed
    out["max_features"] = {}
    for name, fraction in SUBSET_SETS.items():
        x, _ = load(name)
        model = IsolationForest(n_estimators=100, max_samples=min(256, len(x)), max_features=fraction, random_state=0)
        scores = -model.fit(x).score_samples(x)
        out["max_features"][name] = {"fraction": fraction, "seed": 0, "scores": [round(float(s), 7) for s in scores]}
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
