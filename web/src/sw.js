// Service worker of the grid-worker app (/m/). Keeps the app shell and the public tiles of my grid
// so the map opens on a bad connection; the API and the private incident tiles are never cached.
const CACHE = 'gridserver-m-v2';
// the app shell: the page, and every file of the built bundle that mobile.js loads — written in by the
// build from its chunk graph (web/vite.config.js), so a chunk split by another page is never missed
const SHELL = ['/m/', '/m/manifest.webmanifest', ...__MOBILE_BUNDLE__, '/m/maplibre-gl-worker.mjs',
  '/static/map/dist/icon.svg', '/tiles/layers.json'];
const PUBLIC_TILES = /\/tiles\/(districts|streets|communities|grids|roads|landuse|buildings)\//;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) cache.put(request, response.clone());
    return response;
  } catch (err) {
    const hit = await cache.match(request, { ignoreSearch: true, ignoreVary: true });
    if (hit) return hit;
    throw err;
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreVary: true });
  if (hit) {
    fetch(request).then((r) => { if (r.ok) cache.put(request, r); }).catch(() => {});
    return hit;
  }
  const response = await fetch(request);
  if (response.ok || response.status === 204) cache.put(request, response.clone());
  return response;
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname === '/m/' || url.pathname === '/m' || url.pathname.startsWith('/static/map/dist/')
      || url.pathname === '/m/manifest.webmanifest' || url.pathname === '/m/maplibre-gl-worker.mjs'
      || url.pathname === '/tiles/layers.json') {
    event.respondWith(networkFirst(event.request));
  } else if (PUBLIC_TILES.test(url.pathname)) {
    event.respondWith(cacheFirst(event.request));
  }
});

self.addEventListener('message', (event) => {
  if (event.data?.type !== 'cache-tiles') return;
  event.waitUntil(caches.open(CACHE).then(async (cache) => {
    for (const u of event.data.urls) {
      if (await cache.match(u)) continue;
      try {
        const r = await fetch(u);
        if (r.ok || r.status === 204) await cache.put(u, r);
      } catch { return; }
    }
  }));
});
