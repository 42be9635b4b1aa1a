"""xpnet.evaluation on small arrays whose values are worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import evaluation as ev

# ---------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_rows_are_true_classes_columns_predictions() -> None:
    cm = ev.confusion_matrix([0, 1, 2, 2, 2], [0, 0, 2, 2, 1])
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 0, 0], [0, 1, 2]])
    assert cm.dtype == np.int64


def test_confusion_matrix_accepts_columns_floats_and_a_class_count() -> None:
    cm = ev.confusion_matrix(np.array([[0.0], [1.0]]), [1, 1], num_classes=4)
    assert cm.shape == (4, 4)
    assert cm[0, 1] == 1 and cm[1, 1] == 1 and cm.sum() == 2


@pytest.mark.parametrize(
    ("y_true", "y_pred", "kwargs", "message"),
    [
        ([0, 1, 1], [0, 1], {}, "different numbers of samples"),
        ([], [], {}, "empty"),
        ([0, 1, 3], [0, 1, 1], {"num_classes": 3}, r"lie in \[0, 3\)"),
        ([0, -1], [0, 0], {}, "non-negative"),
        ([0.5, 1.0], [0, 1], {}, "non-integer"),
        ([0, np.nan], [0, 1], {}, "NaN"),
        (np.eye(3), [0, 1, 2], {}, "one-hot"),
        ([0, 1], [0, 1], {"num_classes": 0}, "positive integer"),
    ],
)
def test_confusion_matrix_errors_name_the_problem(y_true: object, y_pred: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ev.confusion_matrix(y_true, y_pred, **kwargs)


def test_strings_are_rejected_with_a_type_error() -> None:
    with pytest.raises(TypeError, match="numeric"):
        ev.confusion_matrix(["a", "b"], ["a", "b"])


# ---------------------------------------------------------------------------- precision / recall / F1


def test_binary_scores_of_the_positive_label() -> None:
    # y_pred 1 at samples 0, 1, 3: tp = 2 (0, 3), fp = 1 (1); true 1 at 0, 2, 3: fn = 1 (2)
    y_true, y_pred = [1, 0, 1, 1, 0], [1, 1, 0, 1, 0]
    assert ev.precision_recall_f1(y_true, y_pred) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # class 0 as the positive: tp = 1 (4), fp = 1 (2), fn = 1 (1)
    assert ev.precision_recall_f1(y_true, y_pred, pos_label=0) == pytest.approx((0.5, 0.5, 0.5))
    assert ev.precision(y_true, [1, 0, 0, 0, 0]) == 1.0
    assert ev.recall(y_true, [1, 0, 0, 0, 0]) == pytest.approx(1 / 3)
    assert ev.f1_score(y_true, [1, 0, 0, 0, 0]) == pytest.approx(0.5)  # 2·1 / (2 + 0 + 2)


def test_binary_average_refuses_multiclass_labels_and_a_missing_pos_label() -> None:
    with pytest.raises(ValueError, match=r"3 distinct labels.*macro"):
        ev.precision_recall_f1([0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="pos_label=1 is not one of the labels"):
        ev.precision_recall_f1([0, 2], [2, 0])
    with pytest.raises(ValueError, match="average must be one of"):
        ev.precision_recall_f1([0, 1], [0, 1], average="samples")  # type: ignore[arg-type]


def test_a_class_never_predicted_takes_zero_division() -> None:
    # class 1 is never predicted: its precision is 0/0; recall 0/1 = 0; f1 0/(0 + 0 + 1) = 0
    y_true, y_pred = [0, 1, 2, 2], [0, 0, 2, 2]
    p, r, f = ev.precision_recall_f1(y_true, y_pred, average=None)
    np.testing.assert_allclose(p, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(f, [2 / 3, 0.0, 1.0])
    p1, r1, f1 = ev.precision_recall_f1(y_true, y_pred, average=None, zero_division=1.0)
    np.testing.assert_allclose(p1, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(r1, r)
    np.testing.assert_allclose(f1, f)
    assert ev.precision(y_true, y_pred, average="macro") == pytest.approx(1.5 / 3)
    assert ev.precision(y_true, y_pred, average="macro", zero_division=1.0) == pytest.approx(2.5 / 3)
    assert np.isnan(ev.precision(y_true, y_pred, average=None, zero_division=np.nan)[1])
    with pytest.raises(ValueError, match="zero_division"):
        ev.precision(y_true, y_pred, average="macro", zero_division=2.0)


def test_all_samples_of_one_class() -> None:
    assert ev.precision_recall_f1([1, 1, 1], [1, 1, 1]) == (1.0, 1.0, 1.0)
    # all negative, all predicted negative: class 1 has tp = fp = fn = 0
    assert ev.precision_recall_f1([0, 0, 0], [0, 0, 0]) == (0.0, 0.0, 0.0)
    assert ev.precision_recall_f1([0, 0, 0], [0, 0, 0], zero_division=1.0) == (1.0, 1.0, 1.0)
    # macro averages only the classes that occur: class 0 alone, perfect
    assert ev.precision_recall_f1([0, 0, 0], [0, 0, 0], average="macro", num_classes=2) == (1.0, 1.0, 1.0)
    p, r, f = ev.precision_recall_f1([0, 0, 0], [0, 0, 0], average=None, num_classes=2)
    np.testing.assert_array_equal(p, [1.0, 0.0])
    assert p.dtype == np.float64 and r.shape == f.shape == (2,)


def test_micro_macro_and_weighted_averages_differ() -> None:
    # confusion matrix [[3, 1, 0], [0, 1, 0], [0, 1, 0]]
    # per class tp (3, 1, 0), fp (0, 2, 0), fn (1, 0, 1), support (4, 1, 1)
    # precision (1, 1/3, 0/0 -> 0), recall (3/4, 1, 0), f1 (6/7, 2/4, 0)
    y_true, y_pred = [0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(ev.confusion_matrix(y_true, y_pred), [[3, 1, 0], [0, 1, 0], [0, 1, 0]])
    assert ev.precision_recall_f1(y_true, y_pred, average="macro") == pytest.approx((4 / 9, 7 / 12, 19 / 42))
    # micro pools tp = 4, fp = 2, fn = 2: all three equal the accuracy 4/6
    assert ev.precision_recall_f1(y_true, y_pred, average="micro") == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # weighted by support 4:1:1
    assert ev.precision_recall_f1(y_true, y_pred, average="weighted") == pytest.approx((13 / 18, 2 / 3, 55 / 84))


def test_macro_skips_a_class_absent_from_both_arrays_but_per_class_lists_it() -> None:
    # labels 0 and 2 only: class 1 has no samples and no predictions
    p, r, f = ev.precision_recall_f1([0, 2, 2], [0, 2, 0], average=None)
    np.testing.assert_allclose(p, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 0.0, 0.5])
    np.testing.assert_allclose(f, [2 / 3, 0.0, 2 / 3])
    assert ev.precision([0, 2, 2], [0, 2, 0], average="macro") == pytest.approx(0.75)


# ---------------------------------------------------------------------------- ROC


def test_roc_curve_groups_tied_scores() -> None:
    # positives score .9 .8 .4, negatives .8 .4 .1; thresholds are the distinct scores
    # >= .9: tp 1 fp 0; >= .8: tp 2 fp 1 (tie); >= .4: tp 3 fp 2 (tie); >= .1: tp 3 fp 3
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.4, 0.8, 0.8, 0.9]
    fpr, tpr, thr = ev.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.8, 0.4, 0.1])
    # trapezoids 0 + 1/3·1/2 + 1/3·5/6 + 1/3·1 = 7/9; pairs: .9 beats 3, .8 beats 2 + ties 1 (2.5),
    # .4 beats 1 + ties 1 (1.5): 7 of 9 pairs
    assert ev.auc(fpr, tpr) == pytest.approx(7 / 9)
    assert ev.roc_auc(y, s) == pytest.approx(7 / 9)
    order = np.random.default_rng(0).permutation(6)
    assert ev.roc_auc(np.array(y)[order], np.array(s)[order]) == pytest.approx(7 / 9)


def test_all_scores_tied_give_the_diagonal() -> None:
    fpr, tpr, thr = ev.roc_curve([0, 1, 1, 0], [0.3, 0.3, 0.3, 0.3])
    np.testing.assert_array_equal(thr, [np.inf, 0.3])
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(tpr, [0, 1])
    assert ev.roc_auc([0, 1, 1, 0], [0.3] * 4) == 0.5


def test_perfect_and_inverted_classifiers() -> None:
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.7, 0.8, 0.9]
    assert ev.roc_auc(y, s) == 1.0
    assert ev.roc_auc(y, [1 - v for v in s]) == 0.0
    fpr, tpr, _ = ev.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1, 1])
    # bool labels, (n, 1) scores, logits and another pos_label
    assert ev.roc_auc(np.array(y, bool), np.array(s)[:, None]) == 1.0
    assert ev.roc_auc(y, [-5, -1, 2, 3, np.inf]) == 1.0
    fpr2, tpr2, _ = ev.roc_curve([3, 3, 7, 7, 7], s, pos_label=7)
    np.testing.assert_array_equal(fpr2, fpr)
    np.testing.assert_array_equal(tpr2, tpr)


def test_roc_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ev.roc_auc([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match="different numbers of samples"):
        ev.roc_curve([0, 1, 1], [0.2, 0.5])
    with pytest.raises(ValueError, match="empty"):
        ev.roc_curve([], [])
    with pytest.raises(ValueError, match="binary"):
        ev.roc_curve([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="labels 0 and 1"):
        ev.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="only 'ovr'"):
        ev.roc_auc([0, 1], [0.1, 0.2], multi_class="ovo")


def test_auc_is_the_trapezoid_rule() -> None:
    assert ev.auc([0, 1, 2], [0, 1, 0]) == pytest.approx(1.0)
    assert ev.auc([2, 1, 0], [0, 1, 0]) == pytest.approx(1.0)  # decreasing x
    assert ev.auc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="monotonic"):
        ev.auc([0, 2, 1], [0, 1, 0])
    with pytest.raises(ValueError, match="at least 2 points"):
        ev.auc([0], [1])
    with pytest.raises(ValueError, match="same length"):
        ev.auc([0, 1], [0, 1, 1])


# one-vs-rest, worked out pair by pair:
# class 0: positives .8 .6 beat all negatives .1 .2 .3 .1 -> 8/8
# class 1: positives .6 .3, negatives .1 .2 .3 .5: .6 beats 4, .3 beats 2 and ties 1 -> 6.5/8
# class 2: positives .6 .4, negatives .1 .3 .1 .4: .6 beats 4, .4 beats 3 and ties 1 -> 7.5/8
Y3 = np.array([0, 1, 2, 0, 1, 2])
S3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.1, 0.5, 0.4]])


def test_one_vs_rest_auc() -> None:
    np.testing.assert_allclose(ev.roc_auc(Y3, S3, average=None), [1.0, 0.8125, 0.9375])
    assert ev.roc_auc(Y3, S3) == pytest.approx(2.75 / 3)
    assert ev.roc_auc(Y3, S3, average="weighted") == pytest.approx(2.75 / 3)  # equal supports
    assert ev.roc_auc(np.eye(3)[Y3], S3) == pytest.approx(2.75 / 3)  # one-hot targets
    # micro: 6 positive and 12 negative (label, score) pairs pooled; the positives .8 and .6 ×3
    # beat all 12 negatives, .3 beats 7 and ties 3, .4 beats 10 and ties 1: 67 of 72 pairs
    assert ev.roc_auc(Y3, S3, average="micro") == pytest.approx(67 / 72)


def test_one_vs_rest_weighted_uses_class_prevalence() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    s = np.eye(3)[y] * 0.8 + 0.1  # .9 for the true class, .1 elsewhere: perfect for every class
    s[0] = [0.1, 0.9, 0.1]  # sample 0 (class 0) now scores like a class 1 sample
    per = ev.roc_auc(y, s, average=None)
    # class 0: positives .1 .9 .9 vs negatives .1 .1 .1: .1 ties 3 (1.5), the others win 6 -> 7.5/9
    # class 1: positives .9 .9 vs negatives .9 .1 .1 .1: each wins 3 and ties 1 -> 7/8; class 2: 1
    np.testing.assert_allclose(per, [7.5 / 9, 7 / 8, 1.0])
    assert ev.roc_auc(y, s, average="weighted") == pytest.approx((3 * 7.5 / 9 + 2 * 7 / 8 + 1) / 6)


def test_one_vs_rest_errors() -> None:
    with pytest.raises(ValueError, match=r"class 2 has no sample in y_true.*undefined"):
        ev.roc_auc([0, 1, 0, 1], S3[:4])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        ev.roc_auc([0, 1, 3, 0, 1, 2], S3)
    with pytest.raises(ValueError, match="different numbers of samples"):
        ev.roc_auc(Y3[:5], S3)
    with pytest.raises(ValueError, match="indicator"):
        ev.roc_auc(np.full((6, 3), 0.5), S3)


# ---------------------------------------------------------------------------- MAPE


def test_mape_as_keras() -> None:
    assert ev.mape([100.0, 200.0], [110.0, 180.0]) == pytest.approx(10.0)
    assert ev.mape(np.array([[1.0], [2.0]]), [1.5, 1.0]) == pytest.approx(50.0)  # (n, 1) vs (n,)
    # a zero target divides by 1e-7, as in Keras: |0 - 1e-7| / 1e-7 = 1 -> 100 %
    assert ev.mape([0.0], [1e-7]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="same shape"):
        ev.mape([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="empty"):
        ev.mape([], [])
    with pytest.raises(ValueError, match="finite"):
        ev.mape([1.0], [np.nan])


# ---------------------------------------------------------------------------- report


def test_classification_report_matches_scikit_learns_layout() -> None:
    # scikit-learn's documented example (digits=2), reproduced character for character
    text = ev.classification_report(
        [0, 1, 2, 2, 2], [0, 0, 2, 2, 1], target_names=["class 0", "class 1", "class 2"], digits=2
    )
    assert text == (
        "              precision    recall  f1-score   support\n"
        "\n"
        "     class 0       0.50      1.00      0.67         1\n"
        "     class 1       0.00      0.00      0.00         1\n"
        "     class 2       1.00      0.67      0.80         3\n"
        "\n"
        "    accuracy                           0.60         5\n"
        "   macro avg       0.50      0.56      0.49         5\n"
        "weighted avg       0.70      0.60      0.61         5\n"
    )


def test_classification_report_default_four_digits_and_long_names() -> None:
    text = ev.classification_report(
        [0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 1], target_names=["T-shirt/top", "Trouser", "Ankle boot"]
    )
    lines = text.splitlines()
    assert lines[0] == "              precision    recall  f1-score   support"
    assert lines[2] == " T-shirt/top     1.0000    0.7500    0.8571         4"
    assert lines[3] == "     Trouser     0.3333    1.0000    0.5000         1"
    assert lines[4] == "  Ankle boot     0.0000    0.0000    0.0000         1"
    assert lines[6] == "    accuracy                         0.6667         6"
    assert lines[7] == "   macro avg     0.4444    0.5833    0.4524         6"
    assert lines[8] == "weighted avg     0.7222    0.6667    0.6548         6"
    # a name longer than "weighted avg" widens the first column
    wide = ev.classification_report([0, 1], [0, 1], target_names=["a very long class name", "b"])
    assert wide.splitlines()[2].startswith("a very long class name     1.0000")


def test_classification_report_lists_every_class_and_checks_names() -> None:
    text = ev.classification_report([0, 1], [0, 1], num_classes=3)
    assert text.splitlines()[4] == "           2     0.0000    0.0000    0.0000         0"
    with pytest.raises(ValueError, match="target_names has 2 names but there are 3 classes"):
        ev.classification_report([0, 1, 2], [0, 1, 2], target_names=["a", "b"])
    with pytest.raises(ValueError, match="digits"):
        ev.classification_report([0, 1], [0, 1], digits=-1)


# ---------------------------------------------------------------------------- shared counts


def test_scores_from_counts_matches_label_based_scores() -> None:
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm = ev.confusion_matrix(y_true, y_pred, 4)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    for average in ("macro", "micro", "weighted"):
        assert ev.scores_from_counts(tp, fp, fn, average) == pytest.approx(  # type: ignore[arg-type]
            ev.precision_recall_f1(y_true, y_pred, average=average)  # type: ignore[arg-type]
        )
    assert ev.precision_recall_f1(y_true, y_pred, average="micro")[0] == pytest.approx(np.mean(y_true == y_pred))
