"""The monitor follows the online learner's renewals from the predictions' lineage (the scorer
stamps each prediction with its learner's renewal count): on a renewal the label-free estimate's
online calibration starts afresh and late labels of the old learner's predictions calibrate
nothing, as in the backtest. Fed through the monitor's own dispatch; a real ledger on SQLite."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from driftctl.messages import Label
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.codec import encode_label, encode_prediction
from serving.monitor import Monitor


def test_a_renewal_in_the_lineage_restarts_the_online_calibration(tmp_path):
    settings = Settings(home=tmp_path)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    mon = Monitor(settings, "127.0.0.1:1", None, ledger, lambda w, t: {"promoted": False},  # type: ignore[arg-type]
                  threading.Event())
    topics = settings.kafka.topics

    def predict(i: int, renewals: int, scorer: str = "scorer-1", served_by: str = "online") -> None:
        value = {"id": f"r{i}", "ts": 1.0, "prediction": 1, "model": {"name": "m", "version": 1, "run_id": "x"},
                 "online": {"prediction": 1, "n_learned": i, "renewals": renewals}, "champion": {"prediction": 0},
                 "served_by": served_by, "confidence": 0.9, "scorer": scorer}
        mon._dispatch(topics.predictions, SimpleNamespace(partition=0, offset=i, value=encode_prediction(value)))

    def label(i: int, y: int) -> None:
        value = encode_label(Label(id=f"r{i}", ts=1.0, label=y))
        mon._dispatch(topics.labels, SimpleNamespace(partition=0, offset=i, value=value))

    def online() -> float:
        return mon.watch.estimate.expect("online", 0.9)

    for i in range(300):  # the old tree: confident and wrong
        predict(i, 0)
        label(i, 0)
    assert online() < 0.2
    for i in range(300, 400):  # scored by the old tree, labelled after the renewal
        predict(i, 0)
    predict(400, 1)  # the scorer's learner renewed: its predictions say so
    assert online() == 0.9  # the raw confidence until the new tree's labels come
    for i in range(300, 400):
        label(i, 0)
    assert online() == 0.9  # the old tree's late labels calibrate nothing
    label(400, 1)
    assert online() > 0.9  # the new tree's do
    after = online()
    predict(401, 0)  # an older prediction read late (another partition): no renewal
    predict(402, 0, scorer="scorer-2")  # another scorer, first seen: no renewal either
    assert online() == after
    predict(403, 2, scorer="scorer-2", served_by="champion")
    assert online() == 0.9  # that scorer's learner renewed since it was first seen
    label(403, 0)  # served by the champion: calibrates the champion whatever the learner did
    assert mon.watch.estimate.expect("champion", 0.9) < 0.9
    ledger.close()
