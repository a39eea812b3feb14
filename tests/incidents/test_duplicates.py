"""The duplicate detector (查重) on generated reports with known duplicates and hard negatives."""

from __future__ import annotations

from gridserver.incidents import duplicates
from gridserver.incidents.duplicates import evaluate, generate_reports, score_pair, text_similarity


def test_precision_and_recall_on_generated_duplicates():
    reports, truth = generate_reports(seed=0)  # the threshold was chosen on seed 1
    m = evaluate(reports, truth)
    print(f"\nduplicate detector on {m['reports']} reports / {m['pairs']} known duplicates: "
          f"precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f} (threshold {m['threshold']})")
    assert m["pairs"] > 200
    assert m["precision"] >= 0.78 and m["recall"] >= 0.88
    # the text score matters: place and time alone do much worse on the hard negatives
    blind = evaluate([{**r, "description": "同一问题"} for r in reports], truth)
    assert blind["precision"] < m["precision"] - 0.1


def test_score_rules():
    a, b = "中山四路12号门口垃圾堆放，请尽快处理", "反映一下：中山四路12号附近垃圾堆放"
    assert text_similarity(a, b) > 0.6 and text_similarity(a, "路灯不亮") < 0.3
    assert score_pair(a, b, 10, 2, True) >= duplicates.THRESHOLD
    assert score_pair(a, b, duplicates.RADIUS_M + 1, 2, True) == 0.0  # outside the radius
    assert score_pair(a, b, 10, duplicates.WINDOW_H + 1, True) == 0.0  # outside the window
    assert score_pair(a, b, 10, 2, True) > score_pair(a, b, 120, 60, False)
