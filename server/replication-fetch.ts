/**
 * The fetch of an embedded server's replications, over persistent connections. PouchDB's
 * node-fetch asks for `Connection: close` when it is given no agent, so every request of a
 * running replication opened a new TCP connection (about 17 a second for a simulation's two
 * jobs), each then held in TIME_WAIT for a minute. Node's agent drops an idle socket a second
 * before the server's Keep-Alive hint, so a request does not go out on a socket being closed.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';

type Fetch = (url: string, options?: Record<string, unknown>) => Promise<unknown>;

export interface ReplicationFetch {
  /** `fetch` (PouchDB's own) with a keep-alive agent for the URL's protocol. */
  fetch: Fetch;
  /** Closes the sockets: a stopped server keeps no connection open. */
  close(): void;
}

export function keepAliveFetch(fetch: Fetch): ReplicationFetch {
  const http = new HttpAgent({ keepAlive: true, scheduling: 'lifo' });
  const https = new HttpsAgent({ keepAlive: true, scheduling: 'lifo' });
  const agent = (target: URL) => (target.protocol === 'https:' ? https : http);
  return {
    fetch: (url, options = {}) => fetch(url, { ...options, agent }),
    close: () => {
      http.destroy();
      https.destroy();
    },
  };
}
