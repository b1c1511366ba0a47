//! End-to-end encrypted conversations (issue 13): what the server keeps of them.
//!
//! Clients do all the cryptography (WebCrypto: ECDH P-256 device keys, AES-256-GCM
//! conversation keys wrapped per device with ECDH + HKDF, PBKDF2 key backups). The server
//! stores and relays only public keys, wrapped keys and ciphertext, and validates their
//! *shape*: lengths and encodings, never the curve or the cipher. Everything binary travels
//! as base64url without padding ([`decode_base64url`]).

use crate::ids::{ConversationId, DeviceId, UserId};
use crate::user::{refuse_nul, InvalidField};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Most live devices one user may have.
pub const MAX_DEVICES_PER_USER: usize = 10;

/// Length of an uncompressed P-256 public point: `0x04 || x || y`.
pub const PUBLIC_KEY_BYTES: usize = 65;

/// Most bytes a wrapped conversation key may have (decoded).
pub const MAX_WRAPPED_KEY_BYTES: usize = 512;

/// Most wraps one key upload may carry (every device of a full group would not fit in one
/// request body anyway; clients send several).
pub const MAX_WRAPS_PER_UPLOAD: usize = 500;

/// Encodes `bytes` as base64url without padding (RFC 4648 section 5): the one spelling
/// [`decode_base64url`] accepts. The server only checks clients' encodings; this is for the
/// tests that play clients (and the inverse the decoder is tested against).
pub fn encode_base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let at = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (at(0) << 16) | (at(1) << 8) | at(2);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes strict base64url without padding (RFC 4648 section 5): only `A-Z a-z 0-9 - _`,
/// no `=`, no length that no byte string encodes to (`len % 4 == 1`), and no stray bits in
/// the last character, so every byte string has exactly one accepted spelling. `None` when
/// `text` is not such an encoding.
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc: u32 = 0;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => {
                // 18 bits for 2 bytes: the low 2 must be zero.
                if acc & 0b11 != 0 {
                    return None;
                }
                out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            }
            2 => {
                // 12 bits for 1 byte: the low 4 must be zero.
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Decodes `raw` as base64url of `min..=max` bytes, refusing `field` otherwise.
fn base64url_field(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<Vec<u8>, InvalidField> {
    let bytes = decode_base64url(raw)
        .ok_or_else(|| InvalidField::new(field, "must be base64url without padding"))?;
    if bytes.len() < min || bytes.len() > max {
        let reason = if min == max {
            format!("must encode exactly {min} bytes")
        } else {
            format!("must encode {min} to {max} bytes")
        };
        return Err(InvalidField::new(field, reason));
    }
    Ok(bytes)
}

/// A device's ECDH P-256 public key: base64url of the 65-byte uncompressed point. Only the
/// encoding, the length and the leading `0x04` are checked (no curve arithmetic: the
/// clients import it with WebCrypto, which refuses a point off the curve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePublicKey(String);

impl DevicePublicKey {
    /// Validates a public key as sent.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let bytes = base64url_field("public_key", raw, PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES)?;
        if bytes.first() != Some(&0x04) {
            return Err(InvalidField::new(
                "public_key",
                "must be an uncompressed P-256 point (first byte 0x04)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Taken as stored (validated when it was written).
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What users compare to verify a device: the SHA-256 of the raw 65 bytes in lower-case
    /// hex, as 16 groups of 4 digits separated by single spaces.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&decode_base64url(&self.0).unwrap_or_default())
    }
}

/// The fingerprint of raw public-key bytes (see [`DevicePublicKey::fingerprint`]).
pub fn fingerprint_of(raw: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(raw));
    let groups: Vec<&str> = (0..16).map(|i| &digest[i * 4..i * 4 + 4]).collect();
    groups.join(" ")
}

/// A device's name as its user sees it ("Firefox on laptop"): 1 to 64 characters, not
/// blank, no U+0000. Kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceName(String);

impl DeviceName {
    /// Longest name accepted, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        if raw.trim().is_empty() {
            return Err(InvalidField::new("name", "must not be blank"));
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidField::new(
                "name",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        refuse_nul("name", raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// Taken as stored.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A device to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// Its id.
    pub id: DeviceId,
    /// Its owner.
    pub user_id: UserId,
    /// Its public key.
    pub public_key: DevicePublicKey,
    /// Its name.
    pub name: DeviceName,
    /// Now.
    pub created_at: DateTime<Utc>,
}

/// A registered device. A revoked one keeps its row (`revoked_at` set): members still
/// need the public key of the device that wrapped a key they hold to unwrap it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// Its owner.
    pub user_id: UserId,
    /// Its public key.
    pub public_key: DevicePublicKey,
    /// Its name.
    pub name: DeviceName,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Device {
    /// Whether it is live (not revoked).
    pub fn is_live(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// What registering a device did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertDeviceOutcome {
    /// Registered.
    Inserted(Device),
    /// The user already has the most live devices allowed; nothing was stored.
    TooMany,
}

/// A conversation's encryption: present once it was turned on, never removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionState {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The newest key version stored (1, 2, ...); 0 while no client has made a key yet.
    pub key_version: i64,
    /// A member was removed since the newest key was made: clients make a new version
    /// (rotation), which the removed member's devices never get. Cleared by that upload.
    pub rotation_needed: bool,
    /// When encryption was turned on.
    pub enabled_at: DateTime<Utc>,
}

/// A conversation key wrapped for one device (an opaque blob of 1 to
/// [`MAX_WRAPPED_KEY_BYTES`] bytes, base64url as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The device that can unwrap it.
    pub device_id: DeviceId,
    /// The wrapped key, base64url.
    pub wrapped_key: String,
}

impl WrappedKey {
    /// Validates one wrap as sent.
    pub fn parse(device_id: DeviceId, wrapped_key: &str) -> Result<Self, InvalidField> {
        base64url_field("wrapped_key", wrapped_key, 1, MAX_WRAPPED_KEY_BYTES)?;
        Ok(Self {
            device_id,
            wrapped_key: wrapped_key.to_owned(),
        })
    }
}

/// What a key upload means to do with its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyIntent {
    /// Make version `key_version + 1` (the first key, or a rotation). Two members racing to
    /// make it: the first stores it, the second is told it exists (and fetches that one),
    /// so no device ever gets a second, different key under the same version.
    New,
    /// Share the existing current version with devices that lack it.
    Share,
}

/// A key upload: version `version` of `conversation`'s key wrapped by `from_device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUpload {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The key version.
    pub version: i64,
    /// A new version, or a share of the current one.
    pub intent: KeyIntent,
    /// The uploading device (one of the uploader's live devices, checked by the domain).
    pub from_device_id: DeviceId,
    /// Its owner.
    pub from_user_id: UserId,
    /// The wraps, each for a distinct device.
    pub wraps: Vec<WrappedKey>,
    /// Now.
    pub created_at: DateTime<Utc>,
}

impl KeyUpload {
    /// Whether this upload fits a conversation whose newest version is `key_version`:
    /// `Ok(true)` makes a new version, `Ok(false)` shares the current one, `Err` is the
    /// refusal the store answers (read under the lock that orders uploads).
    pub fn version_verdict(&self, key_version: i64) -> Result<bool, PutKeysOutcome> {
        match self.intent {
            // Version 0 is "no key": never stored.
            KeyIntent::New if self.version >= 1 && self.version <= key_version => {
                Err(PutKeysOutcome::VersionExists { key_version })
            }
            KeyIntent::New if self.version == key_version + 1 => Ok(true),
            KeyIntent::Share if self.version >= 1 && self.version == key_version => Ok(false),
            KeyIntent::New | KeyIntent::Share => Err(PutKeysOutcome::WrongVersion { key_version }),
        }
    }
}

/// What storing a key upload did. Nothing is stored unless `Stored`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutKeysOutcome {
    /// Stored (wraps already there for a device are kept as they were). `key_version` is
    /// the conversation's afterwards; `rotated` when this upload made it.
    Stored {
        /// The conversation's key version afterwards.
        key_version: i64,
        /// Whether this upload was a new version (a rotation, or the first key).
        rotated: bool,
    },
    /// The conversation is not encrypted.
    NotEncrypted,
    /// `version` is not what the intent needs: the current version for a share, the next
    /// one for a new version (and is not [`Self::VersionExists`]).
    WrongVersion {
        /// The conversation's key version.
        key_version: i64,
    },
    /// A new version that another upload made first: `version` exists already.
    VersionExists {
        /// The conversation's key version.
        key_version: i64,
    },
    /// These devices are not live devices of current members.
    NotMemberDevices(Vec<DeviceId>),
}

/// One stored wrap as the device it is for reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key version.
    pub version: i64,
    /// The wrapped key, base64url.
    pub wrapped_key: String,
    /// The device that wrapped it (its public key unwraps it).
    pub from_device_id: DeviceId,
    /// That device's owner.
    pub from_user_id: UserId,
    /// That device's public key (also when it was revoked since): what unwraps it.
    pub from_public_key: DevicePublicKey,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// The devices a conversation's current key still has to be wrapped for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKeys {
    /// The conversation's key version.
    pub key_version: i64,
    /// A member was removed since that version was made (read with it).
    pub rotation_needed: bool,
    /// Live devices of current members without a wrap of `key_version`, oldest first.
    pub devices: Vec<Device>,
}

/// The key derivation a backup names (only one so far).
pub const BACKUP_KDF: &str = "PBKDF2-SHA256";
/// The fewest PBKDF2 iterations a backup may name (OWASP's figure for PBKDF2-SHA256).
pub const MIN_BACKUP_ITERATIONS: u32 = 310_000;
/// The most PBKDF2 iterations a backup may name: far beyond any real cost, and what both
/// stores hold (a 32-bit signed integer).
pub const MAX_BACKUP_ITERATIONS: u32 = 100_000_000;
/// The largest backup ciphertext, decoded.
pub const MAX_BACKUP_BYTES: usize = 1024 * 1024;

/// A user's passphrase-protected key backup, encrypted on the client: the server keeps it
/// for a new browser to restore and cannot read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBackup {
    /// Format version (1).
    pub version: u32,
    /// Key derivation ([`BACKUP_KDF`]).
    pub kdf: String,
    /// Its iterations, [`MIN_BACKUP_ITERATIONS`] to [`MAX_BACKUP_ITERATIONS`].
    pub iterations: u32,
    /// Salt, base64url of 16 to 64 bytes.
    pub salt: String,
    /// AES-GCM IV, base64url of 12 bytes.
    pub iv: String,
    /// Ciphertext and tag, base64url of 17 bytes to [`MAX_BACKUP_BYTES`].
    pub ct: String,
}

impl KeyBackup {
    /// Validates a backup as sent.
    pub fn parse(
        version: u32,
        kdf: &str,
        iterations: u32,
        salt: &str,
        iv: &str,
        ct: &str,
    ) -> Result<Self, InvalidField> {
        if version != 1 {
            return Err(InvalidField::new("version", "must be 1"));
        }
        if kdf != BACKUP_KDF {
            return Err(InvalidField::new(
                "kdf",
                format!("must be \"{BACKUP_KDF}\""),
            ));
        }
        if !(MIN_BACKUP_ITERATIONS..=MAX_BACKUP_ITERATIONS).contains(&iterations) {
            return Err(InvalidField::new(
                "iterations",
                format!("must be {MIN_BACKUP_ITERATIONS} to {MAX_BACKUP_ITERATIONS}"),
            ));
        }
        base64url_field("salt", salt, 16, 64)?;
        base64url_field("iv", iv, 12, 12)?;
        base64url_field("ct", ct, 17, MAX_BACKUP_BYTES)?;
        Ok(Self {
            version,
            kdf: kdf.to_owned(),
            iterations,
            salt: salt.to_owned(),
            iv: iv.to_owned(),
            ct: ct.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        encode_base64url(bytes)
    }

    #[test]
    fn base64url_decodes_every_length_and_refuses_other_spellings() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_base64url(&encode(&bytes)), Some(bytes), "len {len}");
        }
        assert_eq!(decode_base64url("-_8"), Some(vec![0xfb, 0xff]));
        // RFC 4648's test vectors (section 10), without padding, and the URL-safe letters.
        for (raw, text) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_base64url(raw.as_bytes()), text);
        }
        assert_eq!(encode_base64url(&[0xfb, 0xff]), "-_8");
        for bad in ["A", "AAAAA", "AA==", "AB", "AAB", "a+b/", "a b", "é"] {
            assert_eq!(decode_base64url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_public_key_is_65_bytes_starting_with_4() {
        let mut point = vec![0x04];
        point.extend((1..65).map(|i| i as u8));
        let key = DevicePublicKey::parse(&encode(&point)).unwrap();
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), 16 * 4 + 15);
        assert_eq!(fingerprint.split(' ').count(), 16);
        assert!(fingerprint.split(' ').all(|g| g.len() == 4));
        assert_eq!(
            fingerprint.replace(' ', ""),
            hex::encode(Sha256::digest(&point))
        );

        let mut compressed = point.clone();
        compressed[0] = 0x02;
        assert_eq!(
            DevicePublicKey::parse(&encode(&compressed))
                .unwrap_err()
                .field,
            "public_key"
        );
        assert!(DevicePublicKey::parse(&encode(&point[..64])).is_err());
        assert!(DevicePublicKey::parse("not base64!").is_err());
        assert!(DevicePublicKey::parse(&format!("{}=", encode(&point))).is_err());
    }

    #[test]
    fn a_new_version_is_made_once_and_only_the_current_one_is_shared() {
        let upload = |version, intent| KeyUpload {
            conversation_id: ConversationId::new(),
            version,
            intent,
            from_device_id: DeviceId::new(),
            from_user_id: UserId::new(),
            wraps: Vec::new(),
            created_at: Utc::now(),
        };
        let (new, share) = (KeyIntent::New, KeyIntent::Share);
        assert_eq!(upload(1, new).version_verdict(0), Ok(true), "the first key");
        assert_eq!(upload(3, new).version_verdict(2), Ok(true), "a rotation");
        assert_eq!(upload(2, share).version_verdict(2), Ok(false), "a share");
        for (version, have) in [(1, 1), (1, 3), (3, 3)] {
            assert_eq!(
                upload(version, new).version_verdict(have),
                Err(PutKeysOutcome::VersionExists { key_version: have }),
                "made first by another upload: {version} at {have}"
            );
        }
        for (version, intent, have) in [
            (0, new, 0),
            (-1, new, 0),
            (4, new, 2),
            (1, share, 0),
            (0, share, 0),
            (3, share, 2),
            (1, share, 2),
        ] {
            assert_eq!(
                upload(version, intent).version_verdict(have),
                Err(PutKeysOutcome::WrongVersion { key_version: have }),
                "{version} {intent:?} at {have}"
            );
        }
    }

    #[test]
    fn device_names_and_wraps_are_bounded() {
        assert!(DeviceName::parse("laptop").is_ok());
        assert!(DeviceName::parse("  ").is_err());
        assert!(DeviceName::parse(&"x".repeat(65)).is_err());
        assert!(DeviceName::parse(&"é".repeat(64)).is_ok());
        assert!(DeviceName::parse("a\0b").is_err());
        let id = DeviceId::new();
        assert!(WrappedKey::parse(id, &encode(&[1])).is_ok());
        assert!(WrappedKey::parse(id, &encode(&[7; 512])).is_ok());
        assert!(WrappedKey::parse(id, &encode(&[7; 513])).is_err());
        assert!(WrappedKey::parse(id, "").is_err());
    }

    #[test]
    fn backups_name_a_known_kdf_enough_iterations_and_sized_parts() {
        let (salt, iv, ct) = (encode(&[1; 16]), encode(&[2; 12]), encode(&[3; 40]));
        let ok = KeyBackup::parse(1, BACKUP_KDF, 310_000, &salt, &iv, &ct).unwrap();
        assert_eq!(ok.iterations, 310_000);
        let field = |r: Result<KeyBackup, InvalidField>| r.unwrap_err().field;
        assert_eq!(
            field(KeyBackup::parse(2, BACKUP_KDF, 310_000, &salt, &iv, &ct)),
            "version"
        );
        assert_eq!(
            field(KeyBackup::parse(1, "scrypt", 310_000, &salt, &iv, &ct)),
            "kdf"
        );
        assert_eq!(
            field(KeyBackup::parse(1, BACKUP_KDF, 309_999, &salt, &iv, &ct)),
            "iterations"
        );
        assert_eq!(
            field(KeyBackup::parse(
                1,
                BACKUP_KDF,
                MAX_BACKUP_ITERATIONS + 1,
                &salt,
                &iv,
                &ct
            )),
            "iterations"
        );
        assert!(KeyBackup::parse(1, BACKUP_KDF, MAX_BACKUP_ITERATIONS, &salt, &iv, &ct).is_ok());
        let short_salt = encode(&[1; 15]);
        assert_eq!(
            field(KeyBackup::parse(
                1,
                BACKUP_KDF,
                310_000,
                &short_salt,
                &iv,
                &ct
            )),
            "salt"
        );
        let long_iv = encode(&[2; 13]);
        assert_eq!(
            field(KeyBackup::parse(
                1, BACKUP_KDF, 310_000, &salt, &long_iv, &ct
            )),
            "iv"
        );
        let huge = encode(&vec![0; MAX_BACKUP_BYTES + 1]);
        assert_eq!(
            field(KeyBackup::parse(1, BACKUP_KDF, 310_000, &salt, &iv, &huge)),
            "ct"
        );
    }
}
