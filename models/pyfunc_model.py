"""The MLflow pyfunc model for a churnlens bundle, logged as "models from code" (no pickling).

Input: a raw feature frame (categoricals as strings); output: calibrated probabilities. The
bundle directory is the model artifact ``bundle``; :meth:`ModelBundle.prepare` casts the
categoricals to the bundle's fixed levels, which sidesteps mlflow#12910.
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from models.bundle import ModelBundle

BUNDLE_ARTIFACT = "bundle"


class BundlePyfunc(PythonModel):
    """pyfunc wrapper: raw feature frame in (string categoricals), calibrated probability out."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.bundle.predict_proba(model_input)


mlflow.models.set_model(BundlePyfunc())
