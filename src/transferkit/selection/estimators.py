"""Transferability estimators: how well a frozen network suits a labelled dataset, from one forward pass.

    logme(features, labels)            # You et al., ICML 2021: evidence of a Bayesian linear model, per class
    logme_regression(features, y)      # the same for numeric targets (standardised), LogME's regression form
    leep(imagenet_probs, labels)       # Nguyen et al., ICML 2020: log expected empirical prediction
    nce(imagenet_probs, labels)        # Tran et al., ICCV 2019: negative conditional entropy H(Y|Z)
    hscore(features, labels)           # Bao et al., ICIP 2019, with Ledoit-Wolf shrinkage (Ibrahim et al., ICLR 2023)

Higher is better for all four. They are comparable between backbones on the same data, not between datasets.
Plain numpy (scikit-learn for the shrinkage), written from the papers' formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LogME:
    score: float  # LogME: mean over classes of the maximum log evidence per image; higher is better
    weights: np.ndarray  # (d, C) posterior mean weights per class: a ridge classifier whose strength the evidence chose
    classes: np.ndarray  # (C,) the label each column of `weights` scores

    def predict(self, features) -> np.ndarray:
        return self.classes[(np.asarray(features, dtype=np.float64) @ self.weights).argmax(1)]


def logme(features, labels) -> float:
    return logme_fit(features, labels).score


def logme_fit(features, labels, max_iter: int = 100, tol: float = 1e-6) -> LogME:
    """LogME: the maximum log evidence per sample of y_c ~ N(F w, 1/beta), w ~ N(0, 1/alpha), averaged over classes c.

    For each one-hot column y_c, alpha and beta come from MacKay's fixed point (Bishop, PRML 3.5.2):
        gamma = sum_i beta s_i / (alpha + beta s_i)       (s_i: eigenvalues of F^T F)
        alpha = gamma / |m|^2,   beta = (n - gamma) / |y - F m|^2,   m = beta A^-1 F^T y,   A = alpha I + beta F^T F
    One eigendecomposition serves every class and every iteration: O(n d min(n, d)), about 1 s for 5,000 x 1,280.
    The posterior means m come for free and make a linear probe that needs no training (`LogME.predict`).
    """
    y = np.asarray(labels)
    classes = np.unique(y)
    evidences, weights = _logme_columns(features, (y[:, None] == classes[None, :]).astype(np.float64), max_iter, tol)
    return LogME(float(np.mean(evidences)), weights, classes)


@dataclass
class LogMERegression:
    score: float  # LogME of the standardised target(s): evidence per image, higher is better
    weights: np.ndarray  # (d, T) posterior mean weights for the standardised targets
    mean: np.ndarray  # (T,) the targets' mean and std: predictions are (features @ weights) * std + mean
    std: np.ndarray

    def predict(self, features) -> np.ndarray:
        out = (np.asarray(features, dtype=np.float64) @ self.weights) * self.std + self.mean
        return out[:, 0] if out.shape[1] == 1 else out


def logme_regression(features, targets, max_iter: int = 100, tol: float = 1e-6) -> LogMERegression:
    """LogME's regression form (You et al. 2021, section 3: each target dimension is one y of the same Bayesian
    linear model): the evidence of the standardised targets (N,) or (N, T), averaged over target dimensions. The
    targets are standardised because the model has no bias: a price's mean would otherwise cost evidence."""
    t = np.asarray(targets, dtype=np.float64)
    t = t[:, None] if t.ndim == 1 else t
    mean, std = t.mean(0), t.std(0)
    std = np.where(std > 0, std, 1.0)
    evidences, weights = _logme_columns(features, (t - mean) / std, max_iter, tol)
    return LogMERegression(float(np.mean(evidences)), weights, mean, std)


def _logme_columns(features, targets: np.ndarray, max_iter: int, tol: float) -> tuple[list[float], np.ndarray]:
    """Per column t of `targets` (N, T): the maximum log evidence per image and the posterior mean weights."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    sigma, coords, basis = _spectrum(f)
    k = len(sigma)
    evidences, weights = [], []
    for t in np.asarray(targets, dtype=np.float64).T:
        z = coords(t)  # the target along each left singular vector u_i
        z2 = z**2
        outside = max(float(t @ t - z2.sum()), 0.0)  # the part of t no weights can reach (n > d)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            alpha_new, beta_new = _update(alpha, beta, sigma, z2, outside, n)
            done = abs(alpha_new / beta_new - alpha / beta) <= tol * (alpha / beta)
            alpha, beta = alpha_new, beta_new
            if done:
                break
        m2, res2 = _fit(alpha, beta, sigma, z2, outside)
        log_det_a = np.log(alpha + beta * sigma).sum() + (d - k) * np.log(alpha)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2
            - alpha / 2 * m2
            - log_det_a / 2
        )
        evidences.append(evidence / n)
        weights.append(basis @ (beta * z / (alpha + beta * sigma)))  # m = sum_i v_i beta s_i z_i / (alpha + beta s_i^2)
    return evidences, np.stack(weights, 1)


def _spectrum(f: np.ndarray):
    """(sigma, t -> U^T t, B) for F = U diag(s) V^T: sigma = s^2 (the non-zero eigenvalues of F^T F) and B's columns
    s_i v_i = F^T u_i, from the eigendecomposition of the smaller Gram matrix, F F^T (n x n) or F^T F (d x d).
    Faster than an SVD of F, and LAPACK's divide-and-conquer driver (`evd`) is faster again."""
    from scipy.linalg import eigh

    n, d = f.shape
    if n <= d:
        sigma, u = eigh(f @ f.T, driver="evd")
        # directions F does not span (rounding makes their eigenvalues slightly negative) fit nothing: dropped, their
        # target energy is the residual's; features that are all zero (a constant column standardised) keep none
        keep = sigma > max(sigma.max(), 0.0) * 1e-10
        sigma, u = sigma[keep], u[:, keep]
        return sigma, (lambda t: u.T @ t), f.T @ u
    sigma, v = eigh(f.T @ f, driver="evd")
    keep = sigma > max(sigma.max(), 0.0) * 1e-10  # as above
    sigma, v = sigma[keep], v[:, keep]
    s = np.sqrt(sigma)
    fv = f @ v  # = U diag(s)
    return sigma, (lambda t: fv.T @ t / s), v * s


def _fit(alpha: float, beta: float, sigma, z2, outside: float) -> tuple[float, float]:
    """|m|^2 and |y - F m|^2 of the posterior mean, in the SVD basis: m_i = beta s_i z_i / (alpha + beta s_i^2)."""
    denom = alpha + beta * sigma
    m2 = float((beta**2 * sigma * z2 / denom**2).sum())
    res2 = float(((alpha / denom) ** 2 * z2).sum() + outside)  # each direction keeps alpha/(alpha+beta s^2) of y
    return m2, res2


def _update(alpha: float, beta: float, sigma, z2, outside: float, n: int) -> tuple[float, float]:
    m2, res2 = _fit(alpha, beta, sigma, z2, outside)
    gamma = float((beta * sigma / (alpha + beta * sigma)).sum())  # how many directions the data pins down
    tiny = 1e-12  # a perfect fit (m or the residual exactly 0), or features that pin down no direction (gamma 0),
    # must not divide by zero or send alpha to 0 (log alpha in the evidence)
    return max(gamma, tiny) / max(m2, tiny), max(n - gamma, tiny) / max(res2, tiny)


def _joint(probs, labels) -> np.ndarray:
    """Empirical joint P(y, z) of the target labels y and the source (ImageNet) classes z: a (C, Z) table."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    joint = np.zeros((int(y.max()) + 1, p.shape[1]))
    np.add.at(joint, y, p)
    return joint / len(y)


def leep(probs, labels) -> float:
    """LEEP = mean_i log sum_z P(y_i | z) theta_z(x_i): how well a classifier that maps ImageNet's predictions to
    the target labels (through the empirical P(y|z)) does. `probs`: the source head's softmax, (n, Z)."""
    p = np.asarray(probs, dtype=np.float64)
    joint = _joint(p, labels)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y|z); z that no image predicts gets 0
    eep = (p * cond[np.asarray(labels)]).sum(1)
    return float(np.log(np.maximum(eep, 1e-300)).mean())


def nce(probs, labels) -> float:
    """NCE = -H(Y|Z) with z the source head's hard prediction: 0 when each ImageNet class maps to one label."""
    p = np.asarray(probs)
    z = p.argmax(1)
    y = np.asarray(labels)
    joint = np.zeros((int(y.max()) + 1, p.shape[1]))
    np.add.at(joint, (y, z), 1.0 / len(y))
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / np.maximum(pz, 1e-300))[nz])).sum())


def hscore(features, labels) -> float:
    """H-score = tr(cov(f)^-1 cov(E[f|y])): between-class over total variance. The covariance of 1,280 features
    from a few hundred images is singular, so it is Ledoit-Wolf shrunk (the regularised H-score of Ibrahim et al.).
    cov(E[f|y]) = sum_c p_c mu_c mu_c^T, so the trace needs one solve with C right-hand sides, not a d x d inverse."""
    from scipy.linalg import solve
    from sklearn.covariance import ledoit_wolf_shrinkage

    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    f = f - f.mean(0)
    n, d = f.shape
    shrink = ledoit_wolf_shrinkage(f, assume_centered=True)
    cov = f.T @ f / n
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / d * np.eye(d)
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(0) for c in classes])  # (C, d)
    weights = np.array([(y == c).mean() for c in classes])  # p_c
    return float((weights * (means * solve(cov, means.T, assume_a="pos").T).sum(1)).sum())
