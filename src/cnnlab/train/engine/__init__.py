"""One run in memory: :mod:`.setup` builds a :class:`~.state.Run` from a validated config (device,
data loaders, model, optimiser from :mod:`.optim`, schedule from :mod:`.schedules`, processes from
:mod:`.distributed`), :mod:`.loop` repeats :mod:`.steps` (one optimiser step, one evaluation pass)
over epochs and ends with :mod:`.report` (``metrics.json``, the trained model's analysis,
TensorBoard's HParams entry); :mod:`.callbacks` add stages without editing the loop, and
:mod:`.tensorboard` logs what happens as it happens. What is on disk is :mod:`..runs`'s."""
