import streamlit as st

st.title("explain_errors")
st.info("This view is being written.")
