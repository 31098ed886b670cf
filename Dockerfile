# One small image per function, from its self-contained bundle (`npm run build` writes
# dist/<function>.mjs; the bundle needs no node_modules):
#
#   npm run build
#   docker build --build-arg FUNCTION=validate -t <registry>/podcert-validate:<version> .
#   (and derive-sans, sign, deny, publish-trust, resync, dead-letter; <version> is package.json's,
#   the tag knative/services.yaml and knative/dead-letter.yaml name)
#
# The base is distroless Node.js 22: no shell, no package manager, user 65532 ("nonroot").
# knative/services.yaml runs it with that user, a read-only root filesystem and no capabilities.
FROM gcr.io/distroless/nodejs22-debian12:nonroot

# A function of shared/steps.ts (required: without it the COPY below finds no dist/.mjs)
ARG FUNCTION

ENV NODE_ENV=production
COPY dist/${FUNCTION}.mjs /app/function.mjs

# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# Knative sets $PORT (default 8080); GET /healthz answers once the function is ready.
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/function.mjs"]
