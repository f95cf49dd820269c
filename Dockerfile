# The worker image (see k8s/worker-deployment.yaml). The Temporal core bridge ships prebuilt for glibc: use a
# Debian-based Node image, not Alpine.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 1000
CMD ["node", "dist/worker/main.js"]
