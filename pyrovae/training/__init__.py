"""Training: objectives (one estimator each), KL-weight schedules, engines, the trainer
loop (:func:`~pyrovae.training.trainer.fit`) and data-parallel training."""
