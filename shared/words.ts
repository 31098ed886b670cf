/** English for messages. */

/**
 * `word` with "a" or "an" before it, by how it is read: an initialism (two capitals first, such
 * as ECDSAP256 or RSA3072) by its first letter's name ("an RSA3072"), any other word by its vowel.
 */
export function withArticle(word: string): string {
  const vowelSound = /^[A-Z]{2}/.test(word) ? /^[AEFHILMNORSX]/.test(word) : /^[aeiou]/i.test(word);
  return `${vowelSound ? "an" : "a"} ${word}`;
}
