"""A logistic regression whose symptom coefficients are never negative (monotone risk).

scikit-learn's ``LogisticRegression`` has no sign constraints, so this wrapper fits it by an
active-set loop: fit, drop (fix at zero) every constrained feature whose coefficient came out
negative, refit on the rest, until no constrained coefficient is negative. The result is an
ordinary ``LogisticRegression`` on a subset of the features; dropped features have coefficient
exactly 0. With standardised inputs (positive scale) the sign carries over to the raw items, so
predicted risk is non-decreasing in every constrained item (bar B11).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted, validate_data


class NonNegativeLogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary logistic regression with ``coef_[j] >= 0`` wherever ``nonneg[j]`` is true."""

    def __init__(self, C: float = 1.0, nonneg: tuple[bool, ...] | None = None, max_iter: int = 2000,
                 tol: float = 1e-6) -> None:
        self.C = C
        self.nonneg = nonneg
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):  # noqa: N803 - scikit-learn naming
        X, y = validate_data(self, X, y, reset=True)
        self.classes_ = np.unique(y)
        if self.classes_.shape[0] != 2:
            raise ValueError("NonNegativeLogisticRegression is binary")
        yb = (y == self.classes_[1]).astype(int)
        f = X.shape[1]
        mask = np.zeros(f, dtype=bool) if self.nonneg is None else np.asarray(self.nonneg, dtype=bool)
        if mask.shape != (f,):
            raise ValueError(f"nonneg has {mask.shape[0]} entries for {f} features")
        active = np.ones(f, dtype=bool)
        for _ in range(f + 1):
            lr = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)
            lr.fit(X[:, active], yb)
            coef = np.zeros(f)
            coef[active] = lr.coef_[0]
            negative = mask & active & (coef < 0)
            if not negative.any():
                break
            active &= ~negative
        self.coef_ = coef[None, :]
        self.intercept_ = np.asarray(lr.intercept_, dtype=float)
        self.active_ = active
        self.n_iter_ = np.asarray(lr.n_iter_)
        return self

    def decision_function(self, X):  # noqa: N803
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X):  # noqa: N803
        z = self.decision_function(X)
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1 - p1, p1])

    def predict(self, X):  # noqa: N803
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
