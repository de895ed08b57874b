"""The MLflow model registry: where trained bundles go and where the service and batch jobs get them.

    bundle_file   a bundle on disk: `.npz` arrays (no pickle) + `config.json`
    loading       resolve a model URI (alias, version, run) and load its bundle, cached under RECO_HOME
    publishing    log a run's model, register versions, move the champion alias
    pyfunc_model  the MLflow pyfunc wrapper (models-from-code), for `mlflow models serve`

The service imports `loading` only: importing it loads no MLflow (MLflow is imported inside the
functions that talk to the registry).
"""

CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACT = "bundle"  # the bundle directory's name inside the logged pyfunc model
CANDIDATES_TAG = "reco.candidates"  # on a registered version once `reco candidates build` published its candidates
