"""atheris harnesses of the compiled core (connz scan and aggregate, sock_diag, text writer), their
seed corpora, and the short run the suite makes of each."""
