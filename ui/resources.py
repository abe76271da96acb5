"""The application layer the pages call, built once per server process from the settings."""

from __future__ import annotations

import streamlit as st

from appliance.actor import Actor
from appliance.core import Appliance
from appliance.root import Parts
from appliance.users import User
from settings import Settings


@st.cache_resource
def settings() -> Settings:
    return Settings()


@st.cache_resource(show_spinner=False)
def appliance() -> Appliance:
    return Appliance(Parts(settings()))


def actor(user: User) -> Actor:
    """The signed-in user, as the use cases act for them."""
    return appliance().actor_of(user, "ui")
