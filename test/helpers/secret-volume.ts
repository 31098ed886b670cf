/**
 * A Secret volume as kubelet's atomic writer keeps it: the files in a timestamped folder
 * (`..2026_06_01_12_00_00.123`), the symlink `..data` to it, and each key a symlink `<key> →
 * ..data/<key>`. An update writes a new timestamped folder, points `..data_tmp` at it, renames
 * that over `..data` (the one atomic step) and removes the old folder: the key's path keeps its
 * name and resolves to a new inode.
 */
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface SecretVolume {
  dir: string;
  /** The path a container reads a key at. */
  path(key: string): string;
  /** Replaces every key's content, as kubelet does when the Secret changes. */
  update(files: Record<string, string>): void;
}

export function secretVolume(dir: string, files: Record<string, string>): SecretVolume {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let generation = 0;
  let current: string | undefined;
  const write = (content: Record<string, string>) => {
    const folder = `..2026_06_01_12_00_00.${++generation}`;
    mkdirSync(join(dir, folder), { mode: 0o700 });
    for (const [key, text] of Object.entries(content)) writeFileSync(join(dir, folder, key), text, { mode: 0o600 });
    symlinkSync(folder, join(dir, "..data_tmp"));
    renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
    if (current !== undefined) rmSync(join(dir, current), { recursive: true, force: true });
    current = folder;
  };
  write(files);
  for (const key of Object.keys(files)) symlinkSync(join("..data", key), join(dir, key));
  return { dir, path: (key) => join(dir, key), update: write };
}
