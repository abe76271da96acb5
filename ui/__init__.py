"""The Streamlit chat UI. Started by `rag up` as `streamlit run ui/app.py`; nothing imports it."""
