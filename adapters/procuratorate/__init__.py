"""The procuratorate adapter."""
