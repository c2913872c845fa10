"""galaxy_core: data, preprocessing, model, training, evaluation and explanations for Galaxy10 DECaLS.

This package never imports streamlit; the app in `streamlit_app.py` and `pages/` is a thin layer on it.
"""

__version__ = "0.1.0"
