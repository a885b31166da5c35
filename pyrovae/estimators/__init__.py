"""Estimators shared by training, evaluation and the posterior checks: the ELBO and its
terms, the closed-form-or-Monte-Carlo KL, the importance-weighted bound (IWAE) and the
effective sample size; :func:`~pyrovae.estimators.evaluate.evaluate` on a data set."""
