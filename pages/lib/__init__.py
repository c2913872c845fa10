"""Helpers of the app's views, grouped by what they hold; none of them is a page.

Layout (`streamlit_app.py` lists the views explicitly with `st.Page`):
- `pages/views/*.py`: the views (one script per page of the sidebar).
- `pages/lib/*.py`: these helpers. Streamlit's legacy `pages/` discovery (used on a fresh server's
  first run, before `st.navigation` is called) turns only the top-level `pages/*.py` files into
  pages, never files in subfolders, so nothing here can run as a page. No `.py` file may sit
  directly in `pages/` (tests/test_pages_layout.py checks it).

Pure helpers (no streamlit; tested in tests/test_pages_*.py): `captions`, `figures`, `tables`,
`jobs`, `lab`, `saliency`. Streamlit helpers (cached calls into galaxy_core): `state` (cached
loaders, the chosen run), `widgets` (run selector, banners, image grids, the live job log), `uploads`,
`explanations`, `embedding`, `compare`, `catalog`. Their order (views -> lib, and inside lib) is APP_LAYERS in
tests/test_pages_layout.py.
"""
