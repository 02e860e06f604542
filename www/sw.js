// Service worker: keeps the app, its engine and its model on the device so it works offline.
// build.sh stamps BUILD (a hash of every shipped file, model included) and FILES into the
// copy it serves; a new build, a new model among them, gets a new cache and the old one goes.
const BUILD = 'dev';
const FILES = [/* build.sh */];
const CACHE = `dermscreen-${BUILD}`;

// Each file is checked with the server before it is saved ('no-cache'): one the page has just
// downloaded comes from the browser's cache when the server says it is unchanged, and an old copy
// there is never saved as this build's.
self.addEventListener('install', (event) => {
  const fresh = FILES.map((f) => new Request(f, { cache: 'no-cache' }));
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(fresh)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('dermscreen-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// Cache first for this build's files (they are versioned together); everything else, and any
// file missing from the cache, from the network.
self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    caches.open(CACHE).then((cache) =>
      cache.match(request, { ignoreSearch: true }).then((hit) => hit || fetch(request))),
  );
});
