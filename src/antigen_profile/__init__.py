"""antigen-profile: which 4SCAR CAR-T targets do a relapsed B-ALL patient's blasts still carry."""

__version__ = "0.1.0"
