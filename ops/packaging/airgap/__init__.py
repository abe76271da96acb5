"""The air-gapped install bundle: built on a connected host, verified and installed offline.

A bundle is one folder, copied to the appliance host as it is::

    SHA256SUMS            sha256sum lines over every other file (relative paths)
    SHA256SUMS.sig        optional: gpg detached signature of SHA256SUMS
    manifest.json         every artifact: name, kind, version, sha256, size, licence
    sbom.cdx.json         CycloneDX 1.5: Python packages, images, models, OCR packs
    install.sh            the installer's entry point (bash)
    installer/            this package and the pure-Python libraries it needs (docker, httpx)
    compose/              docker-compose.yml, appliance.env.example
    images/*.tar          `docker save` of each image the compose file names
    models/{llm,embedder,reranker}/   model folders at pinned revisions
    tessdata/*.traineddata             Tesseract language packs
    sample-share/         the documents of the post-install smoke test

The installer modules (checksums, manifest, host, images, stack, install) import only the
standard library, docker and httpx: on the appliance host they run from `installer/`.
"""
