"""What a killed `reco train` leaves behind, ended and removed: by the next run, or by the signal.

`reco train` tags its run with the process (`reco.host`, `reco.pid`) and registers a version with
its tags in one call, then moves the alias, then ends the run (FINISHED). So after a kill:

* a run left RUNNING whose process is gone (same host, no such pid), or that started more than
  STALE_RUN_HOURS ago elsewhere, is ended KILLED (resp. FAILED), unless one of its versions holds
  an alias: then the kill came after the alias move, the training made its choice and only its end
  was lost, so the run is ended FINISHED (a later alias move must not turn a chosen version into
  debris);
* a version without an alias whose run did not finish is debris of a kill between registration and
  the alias move: it is deleted, so no READY version is left that nobody chose.

`sweep` does both at the start of every `reco train`; `end_own_runs` does them for the run of this
process when it is stopped by SIGTERM or SIGINT (`on_stop`). MLflow is imported inside the functions.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from training.registry.loading import client

if TYPE_CHECKING:
    from training.settings import Settings

STALE_RUN_HOURS = 24.0  # a RUNNING run of another host older than this is taken for dead
HOST_TAG, PID_TAG = "reco.host", "reco.pid"


def process_tags() -> dict[str, str]:
    """The tags that tell `sweep` whether a RUNNING run's process still lives."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def sweep(*, settings: Settings, experiment: str, name: str, log: Callable[[str], Any] = print) -> None:
    """End the dead runs of `experiment` and delete their versions of `name` that hold no alias."""
    mlflow_client = client(settings=settings)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return
    host, now = socket.gethostname(), time.time()
    for run in mlflow_client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get(HOST_TAG) == host and tags.get(PID_TAG, "").isdigit():
            if _alive(int(tags[PID_TAG])):
                continue
            status = "KILLED"
        elif now - run.info.start_time / 1000 > STALE_RUN_HOURS * 3600:
            status = "FAILED"
        else:
            continue
        status = _end(mlflow_client, run.info.run_id, name=name, status=status)
        log(f"run {run.info.run_id} was left RUNNING by a stopped `reco train`: marked {status}")
    _delete_unfinished_versions(mlflow_client, name=name, log=log)


def end_own_runs(*, settings: Settings, name: str, log: Callable[[str], Any] = print) -> None:
    """End this process's RUNNING runs (KILLED) and delete their versions that hold no alias."""
    mlflow_client = client(settings=settings)
    mine = f"tags.`{PID_TAG}` = '{os.getpid()}' and tags.`{HOST_TAG}` = '{socket.gethostname()}'"
    for experiment in mlflow_client.search_experiments():
        for run in mlflow_client.search_runs(
            [experiment.experiment_id], filter_string=f"attributes.status = 'RUNNING' and {mine}"
        ):
            status = _end(mlflow_client, run.info.run_id, name=name, status="KILLED")
            log(f"stopped: run {run.info.run_id} marked {status}")
    _delete_unfinished_versions(mlflow_client, name=name, log=log)


def on_stop(*, settings: Settings, name: str, log: Callable[[str], Any] = print) -> Callable[[], None]:
    """Install SIGTERM/SIGINT handlers that end this process's run before it exits (128 + signal);
    returns a function that puts the previous handlers back. Outside the main thread (where Python
    cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, _frame: Any) -> None:
        signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once
        try:
            end_own_runs(settings=settings, name=name, log=log)
        finally:
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _end(mlflow_client: Any, run_id: str, *, name: str, status: str) -> str:
    """End a stopped run: FINISHED if a version of `name` it registered holds an alias, else `status`."""
    aliased = _aliased_versions(mlflow_client, name=name)
    versions = mlflow_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if any(str(version.version) in aliased for version in versions):
        status = "FINISHED"
    mlflow_client.set_terminated(run_id, status=status)
    return status


def _delete_unfinished_versions(mlflow_client: Any, *, name: str, log: Callable[[str], Any]) -> None:
    aliased = _aliased_versions(mlflow_client, name=name)
    for version in mlflow_client.search_model_versions(f"name = '{name}'"):
        if str(version.version) in aliased or not version.run_id:
            continue
        status = mlflow_client.get_run(version.run_id).info.status
        if status in ("FAILED", "KILLED"):
            mlflow_client.delete_model_version(name, version.version)
            log(f"deleted version {version.version} of {name}: its training was stopped before an alias moved")


def _aliased_versions(mlflow_client: Any, *, name: str) -> set[str]:
    """The versions of `name` that hold an alias (none while the model is not registered yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return {str(v) for v in mlflow_client.get_registered_model(name).aliases.values()}
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return set()
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
