# Image for the docker-compose stack: the official Airflow image plus this provider.
# Airflow stays pinned to the image's own version so pip never upgrades or downgrades it.
# The `events` extra brings the Redis and common-messaging providers the sign-up Asset watcher needs.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root pyproject.toml README.md /opt/clearout-provider/
COPY --chown=airflow:root plugins/clearout_provider /opt/clearout-provider/plugins/clearout_provider
RUN pip install --no-cache-dir "apache-airflow==3.3.2" "/opt/clearout-provider[events]"
