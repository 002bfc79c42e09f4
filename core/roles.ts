/**
 * The roles of a mesh database's accounts, as CouchDB `_users` roles. The database's
 * `_security` admits them (couchapp push writes it) and the generated validate_doc_update
 * decides from them what a write may do:
 *
 * | role | may |
 * |---|---|
 * | `mesh-agent:<site>` | claim, renew, start, record (succeed, fail, release), expire and report lost jobs for steps the config allows on `<site>`; write its own heartbeat and the records of the runs it triggers at other sites |
 * | `mesh-operator` | retry a failed step, reprocess a done one, mark a document bad, delete a document |
 * | `mesh-reader` | read; write nothing |
 * | `mesh-coordinator` | write assignment, audit and marker documents, resolve conflicts (delete losing branches), carry replicated writes |
 *
 * A server admin (`_admin`) is held to the same rules for data documents: it has the
 * operator's and the coordinator's powers except carrying replication, and never an agent's.
 * The embedded server's "admin party" (no account at all: loopback only, name null) is the
 * one writer trusted with every role; Apache CouchDB 3 has no admin party.
 */

export const AGENT_ROLE_PREFIX = 'mesh-agent:';
export const OPERATOR_ROLE = 'mesh-operator';
export const READER_ROLE = 'mesh-reader';
export const COORDINATOR_ROLE = 'mesh-coordinator';

export type MeshRoleName = 'agent' | 'operator' | 'reader' | 'coordinator';

/** `mesh-agent:lyon` for site `lyon`. */
export function agentRole(site: string): string {
  return AGENT_ROLE_PREFIX + site;
}

/** The CouchDB role for a role name (and a site, for agents). */
export function roleFor(role: MeshRoleName, site?: string): string {
  switch (role) {
    case 'agent':
      if (!site) throw new Error('an agent role needs a site');
      return agentRole(site);
    case 'operator':
      return OPERATOR_ROLE;
    case 'reader':
      return READER_ROLE;
    case 'coordinator':
      return COORDINATOR_ROLE;
  }
}

/** Every role `_security` admits as members, for the given sites. */
export function memberRoles(sites: readonly string[]): string[] {
  return [...sites.map(agentRole), OPERATOR_ROLE, READER_ROLE, COORDINATOR_ROLE];
}

/** CouchDB's user context as validate_doc_update and `/_session` give it. */
export interface UserContext {
  name: string | null;
  roles: readonly string[];
}

/** The sites whose agent role the user holds. */
export function agentSites(user: UserContext): string[] {
  return user.roles.filter((r) => r.startsWith(AGENT_ROLE_PREFIX)).map((r) => r.slice(AGENT_ROLE_PREFIX.length));
}

/** The embedded server without accounts: the only writer trusted with every role. */
export function isAdminParty(user: UserContext): boolean {
  return user.name === null && user.roles.includes('_admin');
}
