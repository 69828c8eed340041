"""Unit tests of featstore.evaluate.metrics with vectors worked out by hand (arithmetic in comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featstore.errors import EvaluationError, FeatstoreError
from featstore.evaluate import metrics as M

# --------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------

Y_TRUE = [0, 0, 0, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 2, 0]


def test_accuracy_hand_worked():
    # correct at positions 0, 1, 3, 4 -> 4 / 6
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)


def test_mean_class_accuracy_hand_worked():
    # class 0: 2 of 3, class 1: 1 of 1, class 2: 1 of 2 -> (2/3 + 1 + 1/2) / 3 = 13/18
    assert M.mean_class_accuracy(Y_TRUE, Y_PRED) == pytest.approx(13 / 18)
    # differs from plain accuracy (4/6 = 12/18) because classes weigh equally
    assert M.mean_class_accuracy(Y_TRUE, Y_PRED) != pytest.approx(M.accuracy(Y_TRUE, Y_PRED))


def test_mean_class_accuracy_ignores_classes_only_predicted():
    # class 9 is predicted but never true: classes are {a, b}: a 1/2, b 1/1 -> 3/4
    assert M.mean_class_accuracy(["a", "a", "b"], ["a", "z", "b"]) == pytest.approx(0.75)


def test_per_class_accuracy_with_absent_class():
    got = M.per_class_accuracy(Y_TRUE, Y_PRED, n_classes=4)
    np.testing.assert_allclose(got[:3], [2 / 3, 1.0, 0.5])
    assert math.isnan(got[3])  # class 3 never occurs in y_true
    assert M.per_class_accuracy(Y_TRUE, Y_PRED).shape == (3,)


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.accuracy([0, 1], [0]),
        lambda: M.accuracy([], []),
        lambda: M.accuracy([[0, 1]], [[0, 1]]),
        lambda: M.per_class_accuracy([0, 1], [0, -1]),
        lambda: M.per_class_accuracy([0, 1, 2], [0, 1, 2], n_classes=2),
        lambda: M.per_class_accuracy([0.5, 1.0], [0.5, 1.0]),
    ],
)
def test_classification_bad_input(call):
    with pytest.raises(EvaluationError):
        call()


# --------------------------------------------------------------------------------------
# VOC average precision
# --------------------------------------------------------------------------------------

# Ranked by score: P N P N P (3 positives).
#   after rank:   1     2     3     4     5
#   precision:    1    1/2   2/3   1/2   3/5
#   recall:      1/3   1/3   2/3   2/3    1
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5]
LABELS = [1, -1, 1, -1, 1]


def test_voc07_hand_worked():
    # t = 0, .1, .2, .3 (<= 1/3): max precision over all ranks = 1          -> 4 x 1
    # t = .4, .5, .6 (<= 2/3):   max(2/3, 1/2, 3/5) = 2/3                    -> 3 x 2/3
    # t = .7, .8, .9, 1.0:       only rank 5 has recall >= t: 3/5            -> 4 x 3/5
    # AP = (4 + 2 + 2.4) / 11 = 8.4 / 11
    assert M.voc07_ap(SCORES, LABELS) == pytest.approx(8.4 / 11)


def test_all_point_ap_hand_worked_and_differs_from_voc07():
    # envelope of precision from the right: 1, 2/3, 2/3, 3/5, 3/5
    # recall steps of 1/3 at ranks 1, 3, 5: AP = (1 + 2/3 + 3/5) / 3 = 34/45
    ap = M.average_precision(SCORES, LABELS)
    assert ap == pytest.approx(34 / 45)
    assert ap != pytest.approx(M.voc07_ap(SCORES, LABELS))  # 0.7556 vs 0.7636


def test_voc07_uses_exact_tenths_not_accumulated_steps():
    # 10 positives: P P P, then 7 negatives, then 7 P (ranks 11..17).
    # Precision at the k-th positive: 1 for k <= 3, then k / (k + 7), rising to 10/17.
    # Recall after the 3rd positive is 3/10 == 0.3 exactly.
    # Exact thresholds: t in {0, .1, .2, .3} -> 1 ; t in {.4 .. 1.0} (7) -> 10/17
    #   AP = (4 + 7 * 10/17) / 11 = 138 / 187
    # With accumulated/linspace thresholds, t = 0.30000000000000004 > 0.3 misses the
    # rank-3 point and gives (3 + 8 * 10/17) / 11 = 131 / 187.
    labels = [1] * 3 + [-1] * 7 + [1] * 7
    scores = -np.arange(17.0)
    assert M.voc07_ap(scores, labels) == pytest.approx(138 / 187, abs=1e-12)
    assert abs(138 / 187 - 131 / 187) > 0.03


def test_ignored_labels_are_dropped_before_ranking():
    # Ignored (0) items interleaved at the top must change nothing.
    scores = [1.0, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5]
    labels = [0, 1, 0, -1, 1, -1, 1]
    assert M.voc07_ap(scores, labels) == pytest.approx(8.4 / 11)
    assert M.average_precision(scores, labels) == pytest.approx(34 / 45)


def test_ties_keep_input_order():
    # Equal scores are ranked in input order (stable sort), documented behaviour:
    # N then P -> precision at the positive 1/2, envelope 1/2 -> AP 1/2; P then N -> 1.
    assert M.average_precision([0.5, 0.5], [-1, 1]) == pytest.approx(0.5)
    assert M.average_precision([0.5, 0.5], [1, -1]) == pytest.approx(1.0)
    # VOC07 for N,P: recall 1 at rank 2 with precision 1/2 for every t -> 1/2
    assert M.voc07_ap([0.5, 0.5], [-1, 1]) == pytest.approx(0.5)


def test_negative_scores_and_integer_scores_work():
    # ranking by -1, -2, -3: P N P -> all-point AP = (1 + 2/3) / 2 = 5/6
    assert M.average_precision([-1, -2, -3], [1, -1, 1]) == pytest.approx(5 / 6)


@pytest.mark.parametrize("fn", [M.voc07_ap, M.average_precision])
@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, 0.2], [0, 0]),  # all ignored
        ([0.1, 0.2], [-1, 0]),  # no positive
        ([0.1, 0.2], [1, 2]),  # bad label value
        ([0.1, 0.2], [True, False]),  # booleans are ambiguous
        ([0.1, np.nan], [1, -1]),  # NaN score
        ([0.1], [1, -1]),  # lengths differ
        ([[0.1]], [[1]]),  # not 1-D
    ],
)
def test_ap_bad_input(fn, scores, labels):
    with pytest.raises(EvaluationError):
        fn(scores, labels)


def test_evaluation_error_is_also_valueerror():
    with pytest.raises(ValueError, match=r"."):
        M.voc07_ap([0.1], [0])
    assert issubclass(EvaluationError, FeatstoreError)


def test_mean_ap_skips_classes_without_positives():
    # column 0: the SCORES/LABELS vector; column 1: P ranked first -> 1.0;
    # column 2: no positive -> NaN, left out. voc07 mean = (8.4/11 + 1) / 2
    scores = np.array([SCORES, [0.9, 0.1, 0.2, 0.3, 0.4], [0.5] * 5]).T
    labels = np.array([LABELS, [1, -1, -1, 0, -1], [-1, -1, 0, -1, -1]]).T
    mean, per_class = M.mean_ap(scores, labels)
    np.testing.assert_allclose(per_class[:2], [8.4 / 11, 1.0])
    assert math.isnan(per_class[2])
    assert mean == pytest.approx((8.4 / 11 + 1.0) / 2)
    mean_all, per_all = M.mean_ap(scores, labels, kind="all")
    assert mean_all == pytest.approx((34 / 45 + 1.0) / 2)
    assert per_all.shape == (3,)


def test_mean_ap_bad_input():
    with pytest.raises(EvaluationError, match="kind"):
        M.mean_ap(np.zeros((2, 2)), np.ones((2, 2)), kind="voc12")
    with pytest.raises(EvaluationError, match="no class"):
        M.mean_ap(np.zeros((2, 2)), -np.ones((2, 2)))
    with pytest.raises(EvaluationError):
        M.mean_ap(np.zeros((2, 2)), np.ones((2, 3)))
    with pytest.raises(EvaluationError):  # a bad label in a skipped column is still caught
        M.mean_ap(np.zeros((2, 2)), np.array([[1, -1], [-1, 7]]))


label_vectors = st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=30).filter(
    lambda v: 1 in v
)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), labels=label_vectors)
def test_property_ap_in_unit_interval(data, labels):
    scores = data.draw(
        st.lists(
            st.floats(-1e6, 1e6, allow_nan=False),
            min_size=len(labels),
            max_size=len(labels),
        )
    )
    for fn in (M.voc07_ap, M.average_precision):
        assert 0.0 <= fn(scores, labels) <= 1.0
    # the all-point envelope is never below the 11-point staircase by more than 1/11
    assert M.average_precision(scores, labels) >= M.voc07_ap(scores, labels) - 1 / 11 - 1e-12


@settings(max_examples=150, deadline=None)
@given(labels=label_vectors, seed=st.integers(0, 2**32 - 1))
def test_property_ap_is_one_when_positives_first(labels, seed):
    lab = np.array(labels)
    # positives get the highest scores, everything else lower; ignored items anywhere
    rng = np.random.default_rng(seed)
    scores = np.where(lab == 1, 10 + rng.random(lab.size), rng.random(lab.size))
    scores[lab == 0] = rng.random(np.count_nonzero(lab == 0)) * 20
    assert M.voc07_ap(scores, lab) == pytest.approx(1.0)
    assert M.average_precision(scores, lab) == pytest.approx(1.0)
    ids = np.argsort(-scores, kind="stable")
    positives = np.flatnonzero(lab == 1)
    junk = np.flatnonzero(lab == 0)
    assert M.retrieval_ap(ids, positives, junk) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------


def test_retrieval_ap_removes_junk_then_trapezoids():
    # ranking a j b c d, junk {j} -> a b c d; positives {b, d}, recall step 1/2
    # b at 0-based rank 1: precision before 0/1, after 1/2 -> 1/2 * (0 + 1/2) / 2 = 1/8
    # d at rank 3: before 1/3, after 2/4 -> 1/2 * (1/3 + 1/2) / 2 = 5/24
    # AP = 1/8 + 5/24 = 1/3
    assert M.retrieval_ap(list("ajbcd"), {"b", "d"}, {"j"}) == pytest.approx(1 / 3)
    # without junk removal it would be 1/2 * (0 + 1/3)/2 + 1/2 * (1/4 + 2/5)/2 = 59/240
    assert M.retrieval_ap(list("ajbcd"), {"b", "d"}) == pytest.approx(59 / 240)


def test_retrieval_ap_trapezoid_starts_at_precision_one():
    # positive first: (1 + 1) / 2 = 1; positive second: (0 + 1/2) / 2 = 1/4, whereas the
    # non-interpolated AP would be 1/2
    assert M.retrieval_ap(["p", "x"], ["p"]) == pytest.approx(1.0)
    assert M.retrieval_ap(["x", "p"], ["p"]) == pytest.approx(0.25)


def test_retrieval_ap_positive_never_retrieved():
    # q never ranked: its recall step is lost. p at rank 1: 1/2 * (0 + 1/2)/2 = 1/8
    assert M.retrieval_ap(["a", "p"], ["p", "q"]) == pytest.approx(0.125)


def test_retrieval_ap_integer_ids_and_numpy_arrays():
    assert M.retrieval_ap(np.array([3, 7, 1]), np.array([7])) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "args",
    [
        (["a", "b"], []),  # no positives
        (["a", "a"], ["a"]),  # duplicate in ranking
        (["a", "b"], ["a"], ["a"]),  # both positive and junk
    ],
)
def test_retrieval_ap_bad_input(args):
    with pytest.raises(EvaluationError):
        M.retrieval_ap(*args)


def test_precision_and_recall_at_k():
    ranked, pos = ["a", "b", "c", "d"], {"b", "d", "z"}
    assert M.precision_at_k(ranked, pos, 1) == 0.0
    assert M.precision_at_k(ranked, pos, 2) == pytest.approx(1 / 2)
    assert M.precision_at_k(ranked, pos, 4) == pytest.approx(2 / 4)
    assert M.precision_at_k(ranked, pos, 10) == pytest.approx(2 / 10)  # divides by k
    assert M.recall_at_k(ranked, pos, 2) == pytest.approx(1 / 3)
    assert M.recall_at_k(ranked, pos, 4) == pytest.approx(2 / 3)
    # junk removed first: a [b] c d with b junk -> a c d; P@2 = 0, P@3 = 1/3
    assert M.precision_at_k(ranked, {"d"}, 3, junk={"b"}) == pytest.approx(1 / 3)
    with pytest.raises(EvaluationError):
        M.precision_at_k(ranked, pos, 0)
    with pytest.raises(EvaluationError):
        M.recall_at_k(ranked, [], 1)


def test_revisited_map_hand_worked():
    # query 0: easy {e}, hard {h}, junk {j}; ranking h j x e
    #   Easy   (pos e, junk j+h): x e          -> AP (0 + 1/2)/2 = 1/4
    #   Medium (pos e+h, junk j): h x e        -> 1/2*(1+1)/2 + 1/2*(1/2+2/3)/2 = 19/24
    #   Hard   (pos h, junk j+e): h x          -> 1
    # query 1: easy {a}, no hard, no junk; ranking a b
    #   Easy 1, Medium 1, Hard skipped (no positives)
    ranks = [["h", "j", "x", "e"], ["a", "b"]]
    gnd = [
        {"easy": ["e"], "hard": ["h"], "junk": ["j"]},
        {"easy": ["a"], "hard": [], "junk": []},
    ]
    r = M.revisited_map(ranks, gnd, ks=(1, 5))
    assert r["easy"]["mAP"] == pytest.approx((1 / 4 + 1) / 2)
    assert r["medium"]["mAP"] == pytest.approx((19 / 24 + 1) / 2)
    assert r["hard"]["mAP"] == pytest.approx(1.0)
    assert (r["easy"]["skipped"], r["medium"]["skipped"], r["hard"]["skipped"]) == (0, 0, 1)
    # mP@k (revisitop: k capped at the rank of the last positive after junk removal)
    #   Easy   q0 positives at [2]: k=1 -> 0/1; k=5 -> cap 2 -> 1/2 ; q1 [1]: 1, 1
    #   Medium q0 [1, 3]: k=1 -> 1; k=5 -> cap 3 -> 2/3 ; q1: 1, 1
    #   Hard   q0 [1]: 1, 1
    assert r["easy"]["mP@k"] == pytest.approx({1: 0.5, 5: 0.75})
    assert r["medium"]["mP@k"] == pytest.approx({1: 1.0, 5: 5 / 6})
    assert r["hard"]["mP@k"] == pytest.approx({1: 1.0, 5: 1.0})


def test_revisited_map_all_skipped_is_nan_and_bad_input():
    r = M.revisited_map([["a"]], [{"easy": ["a"], "hard": [], "junk": []}])
    assert math.isnan(r["hard"]["mAP"])
    assert r["hard"]["skipped"] == 1
    assert math.isnan(r["hard"]["mP@k"][10])
    with pytest.raises(EvaluationError, match="rankings"):
        M.revisited_map([["a"]], [])
    with pytest.raises(EvaluationError, match="lacks"):
        M.revisited_map([["a"]], [{"easy": ["a"]}])
    with pytest.raises(EvaluationError):
        M.revisited_map([["a"]], [{"easy": ["a"], "hard": [], "junk": []}], ks=(0,))


def test_holidays_map_removes_query():
    # q0: ranking q0 n p1 -> query removed -> n p1 -> (0 + 1/2)/2 = 1/4
    # q1: ranking p2 q1 -> p2 -> 1 ; q1 listed among its own positives is dropped
    # mAP = (1/4 + 1) / 2 = 5/8
    got = M.holidays_map([["q0", "n", "p1"], ["p2", "q1"]], [["p1"], ["p2", "q1"]], ["q0", "q1"])
    assert got == pytest.approx(5 / 8)
    with pytest.raises(EvaluationError, match="no positives"):
        M.holidays_map([["q0", "a"]], [["q0"]], ["q0"])
    with pytest.raises(EvaluationError, match="lengths"):
        M.holidays_map([["q0", "a"]], [["a"], ["b"]], ["q0"])


def test_ukbench_score():
    group_of = {i: g for g, ids in enumerate(["abcd", "efgh"]) for i in ids}
    # a: top 4 = a b e c -> 3 of group 0; e: f g h e -> 4; b (not ranked itself):
    # c d a f -> 3. mean = (3 + 4 + 3) / 3 = 10/3
    ranked = {"a": list("abecd"), "e": list("fghe"), "b": list("cdaf")}
    assert M.ukbench_score(ranked, group_of) == pytest.approx(10 / 3)
    as_lists = M.ukbench_score(list(ranked.values()), group_of, query_ids=list(ranked))
    assert as_lists == pytest.approx(10 / 3)
    with pytest.raises(EvaluationError, match="without a group"):
        M.ukbench_score({"a": ["a", "zz"]}, group_of)
    with pytest.raises(EvaluationError, match="query_ids"):
        M.ukbench_score([["a"]], group_of)


def test_subpatch_distance_hand_worked():
    q = [[0.0, 0.0], [3.0, 4.0]]
    img = [[0.0, 1.0], [3.0, 0.0]]
    # (0,0): to (0,1) = 1, to (3,0) = 3 -> 1 ; (3,4): to (0,1) = sqrt(18), to (3,0) = 4 -> 4
    # mean = 2.5
    assert M.subpatch_distance(q, img) == pytest.approx(2.5)
    # asymmetric: image (0,1): min(1, sqrt(18)) = 1 ; (3,0): min(3, 4) = 3 -> 2
    assert M.subpatch_distance(img, q) == pytest.approx(2.0)
    got = M.subpatch_distances(q, [img, q, [[0.0, 0.0], [0.0, 0.0]]])
    # third image has only patches at (0,0): distances 0 and 5 -> 2.5 ; second is q: 0
    np.testing.assert_allclose(got, [2.5, 0.0, 2.5], atol=1e-12)


def test_subpatch_distances_match_single_and_chunking():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 8)).astype(np.float16)
    imgs = rng.normal(size=(23, 7, 8))
    imgs[3, 2] = q[1]  # an exact match must give exactly 0 for that patch
    want = [M.subpatch_distance(q, im) for im in imgs]
    np.testing.assert_allclose(M.subpatch_distances(q, imgs), want, rtol=1e-12)
    np.testing.assert_allclose(M.subpatch_distances(q, imgs, chunk_bytes=1), want, rtol=1e-12)


def test_subpatch_bad_input():
    with pytest.raises(EvaluationError, match="dimensions"):
        M.subpatch_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(EvaluationError):
        M.subpatch_distances(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(EvaluationError):
        M.subpatch_distance(np.zeros((0, 3)), np.zeros((2, 3)))
    with pytest.raises(EvaluationError, match="numeric"):  # images with unequal patch counts
        M.subpatch_distances(np.zeros((1, 2)), [[[0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]])
