/**
 * Runs the lakeinfer CLI with a stand-in Entra ID credential (test/operator.test.ts): a child
 * process, so that NODE_EXTRA_CA_CERTS makes the test's loopback certificate trusted. The token is
 * shaped as Entra ID issues it for storage (audience, issuer, lifetime); Azurite's `--oauth basic`
 * checks those and not the signature. `list C1 C2 ...` prints the blobs of containers as JSON.
 */
import type { AccessToken, TokenCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';
import { main } from '../../lib/cli/cli';

let requested = 0;
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

export const standInCredential: TokenCredential = {
  getToken(scopes: string | string[]): Promise<AccessToken> {
    requested++;
    const scope = Array.isArray(scopes) ? scopes[0]! : scopes;
    if (!scope.startsWith('https://storage.azure.com')) throw new Error(`unexpected scope ${scope}`);
    const now = Math.floor(Date.now() / 1000);
    const claims = { aud: 'https://storage.azure.com', iss: 'https://sts.windows.net/00000000-0000-0000-0000-000000000000/', nbf: now - 60, iat: now - 60, exp: now + 3600, oid: '11111111-1111-1111-1111-111111111111', tid: '00000000-0000-0000-0000-000000000000' };
    return Promise.resolve({ token: `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.c2ln`, expiresOnTimestamp: (now + 3600) * 1000 });
  },
};

const noToken: TokenCredential = { getToken: () => Promise.resolve({ token: 'not-a-jwt', expiresOnTimestamp: Date.now() + 3600_000 }) };

async function run(argv: string[]): Promise<number> {
  if (argv[0] === 'list') {
    const svc = new BlobServiceClient(process.env['LAKEINFER_ACCOUNT_URL']!, standInCredential);
    const names: string[] = [];
    for (const c of argv.slice(1)) for await (const b of svc.getContainerClient(c).listBlobsFlat()) names.push(b.name);
    console.log(JSON.stringify(names.sort()));
    return 0;
  }
  const bad = argv.includes('--no-token');
  const code = await main(argv.filter((a) => a !== '--no-token'), process.env, (s) => console.log(s), { credential: bad ? noToken : standInCredential });
  console.log(`tokens requested: ${requested}`);
  return code;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`lakeinfer: ${(err as Error).message}`);
    process.exit(1);
  },
);
