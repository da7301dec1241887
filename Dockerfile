# The redurable image: the library, its CLI and the examples. compose.yaml runs a worker
# from it; `docker compose run --rm worker workflow list` runs any other command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Only what the package needs (see .dockerignore): a code change rebuilds from here.
COPY pyproject.toml README.md ./
COPY engine engine
COPY sdk sdk
RUN pip install ".[ui]" && useradd --create-home redurable
USER redurable

ENTRYPOINT ["redurable"]
CMD ["--help"]
