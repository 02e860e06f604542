// Service worker: keeps the app, its engine and its model on the device so it works offline.
// build.sh stamps BUILD (a hash of every shipped file, model included) and FILES into the
// copy it serves; a new build, a new model among them, gets a new cache and the old one goes.
const BUILD = 'dev';
const FILES = {/* build.sh: path -> SHA-256 of the engine's wasm and the model, else null */};
const CACHE = `dermscreen-${BUILD}`;
// The engine builds to keep (engine.js: `full` with WebGPU, `cpu` without), as the page that
// registered this worker used them (`sw.js?engine=cpu`); none named, both. The other build's
// files are left to the network: a phone that runs on the CPU never downloads the WebGPU engine.
const ENGINE_FOLDERS = { full: 'pkg/', cpu: 'pkg-cpu/' };
const named = new URL(self.location.href).searchParams.get('engine');
const keep = named ? named.split(',') : Object.keys(ENGINE_FOLDERS);
const wanted = (path) => Object.entries(ENGINE_FOLDERS).every(([build, folder]) => !path.startsWith(folder) || keep.includes(build));

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

/**
 * `path`'s response, checked with the server ('no-cache': one the page has just downloaded comes
 * from the browser's cache when the server says it is unchanged, and an old copy there is never
 * taken for this build's) and, given its `sha256`, refused unless its bytes are this build's.
 * Files are served from the saved copies first, so an engine or model cut short (a deploy
 * caught halfway, a proxy that closed early) would break the page, online too, until the next
 * build.
 */
async function fetchChecked(path, sha256) {
  const response = await fetch(new Request(path, { cache: 'no-cache' }));
  if (!response.ok) throw new Error(`${path}: the server answered ${response.status}`);
  if (sha256 === null) return response;
  const digest = await crypto.subtle.digest('SHA-256', await response.clone().arrayBuffer());
  if (hex(digest) !== sha256) throw new Error(`${path} is not this build's (cut short, or a deploy in progress)`);
  return response;
}

// Every file is checked before any is saved: a refused build saves nothing, and the next visit's
// registration tries again. (A build that runs out of space midway leaves what it saved, unused,
// until a later build's activation deletes it; deleting it here could take the running worker's
// cache with it, as a new sw.js alone keeps the build's name.) Files this build's cache already
// holds are not fetched again: a page that moves to the other engine build registers the worker
// anew (another `?engine=`), and only that build is downloaded.
self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    // (caches.match with a cacheName creates no cache: a refused build leaves none behind.)
    const missing = [];
    for (const [path, sha256] of Object.entries(FILES)) {
      if (wanted(path) && !(await caches.match(path, { cacheName: CACHE }))) missing.push([path, sha256]);
    }
    const checked = await Promise.all(missing.map(async ([path, sha256]) => [path, await fetchChecked(path, sha256)]));
    const cache = await caches.open(CACHE);
    await Promise.all(checked.map(([path, response]) => cache.put(path, response)));
    await self.skipWaiting();
  })());
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
