# Image for the mesh's own processes (coordinator, agents) in docker-compose.multi-site.yml.
FROM node:20-bookworm-slim
WORKDIR /opt/couchmesh
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN node scripts/setup.mjs --quiet
ENTRYPOINT ["node", "/opt/couchmesh/dist/cli/main.js"]
