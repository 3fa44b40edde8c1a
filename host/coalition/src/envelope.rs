//! Sealing: HPKE (RFC 9180) base mode with DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and ChaCha20-Poly1305.
//!
//! Two things are sealed, each to a different key and under its own `info`
//! label so one can never be taken for the other:
//! - a grant's [`GrantSecrets`], sealed by the requester to the provider's
//!   [`EnvelopeKey`] (published in its card), with the grant's public
//!   fields as associated data;
//! - the [`AccessBundle`], sealed by the provider to the grant's one-time
//!   reply key, with the request and provider ids as associated data.
//!
//! Private keys are zeroized when dropped and never printed.

use std::fmt;

use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use compute_bridge_contract::protocol::{
    AccessBundle, AccessSealed, ComputeGrant, GrantSecrets, PROTOCOL_VERSION, ProviderId,
    RequestId, Sealed,
};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

const GRANT_INFO: &[u8] = b"compute-bridge/grant/v1";
const ACCESS_INFO: &[u8] = b"compute-bridge/access/v1";

/// Why something could not be sealed or opened. Deliberately vague: an
/// attacker learns nothing from which step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Wrong key, tampered ciphertext or associated data, or a malformed
    /// encapsulated key.
    #[error("the envelope does not open with this key")]
    Open,
    /// The plaintext inside did not decode.
    #[error("the envelope's contents are malformed")]
    Contents,
    /// A public key was malformed.
    #[error("malformed public key")]
    PublicKey,
}

/// An X25519 keypair for HPKE: the provider's long-lived envelope key, or a
/// requester's one-time reply key.
pub struct EnvelopeKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; 32],
}

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeKey(public {})", hex::encode(self.public))
    }
}

impl EnvelopeKey {
    /// A fresh random keypair.
    pub fn generate() -> Self {
        let (secret, public) = Kem::gen_keypair();
        Self::from_parts(secret, &public)
    }

    /// The keypair RFC 9180's DeriveKeyPair makes from `ikm` (at least 32
    /// bytes of secret input).
    pub fn derive(ikm: &[u8]) -> Self {
        let (secret, public) = Kem::derive_keypair(ikm);
        Self::from_parts(secret, &public)
    }

    fn from_parts(
        secret: <Kem as hpke::Kem>::PrivateKey,
        public: &<Kem as hpke::Kem>::PublicKey,
    ) -> Self {
        let mut p = [0u8; 32];
        p.copy_from_slice(&public.to_bytes());
        Self { secret, public: p }
    }

    /// The public half, as published.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The provider id bound to this key.
    pub fn provider_id(&self) -> ProviderId {
        ProviderId::from_envelope_key(&self.public)
    }

    fn open(
        &self,
        sealed: &Sealed,
        info: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| EnvelopeError::Open)?;
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &self.secret,
            &enc,
            info,
            &sealed.ciphertext,
            aad,
        )
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Open)
    }

    /// Open a grant's envelope (provider side): the reply key, if the
    /// envelope was sealed to this key for exactly this grant.
    pub fn open_grant(&self, grant: &ComputeGrant) -> Result<[u8; 32], EnvelopeError> {
        let plain = self.open(&grant.envelope, GRANT_INFO, &grant.binding())?;
        let secrets: GrantSecrets =
            postcard::from_bytes(&plain).map_err(|_| EnvelopeError::Contents)?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&secrets.reply_key)
            .map_err(|_| EnvelopeError::Contents)?;
        Ok(secrets.reply_key)
    }

    /// Open a sealed access bundle (requester side, with the reply key).
    pub fn open_access(&self, sealed: &AccessSealed) -> Result<AccessBundle, EnvelopeError> {
        let aad = AccessSealed::binding(sealed.version, &sealed.request_id, &sealed.provider_id);
        let plain = self.open(&sealed.bundle, ACCESS_INFO, &aad)?;
        postcard::from_bytes(&plain).map_err(|_| EnvelopeError::Contents)
    }
}

fn seal(
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, EnvelopeError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| EnvelopeError::PublicKey)?;
    let (enc, ciphertext) =
        hpke::single_shot_seal::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, info, plaintext, aad)
            .map_err(|_| EnvelopeError::PublicKey)?;
    Ok(Sealed {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

/// Seal a grant's secrets (requester side) to the provider's envelope key.
/// `grant.envelope` is ignored; the returned envelope belongs in it.
pub fn seal_grant(
    provider_envelope_key: &[u8; 32],
    grant: &ComputeGrant,
    reply_key: &[u8; 32],
) -> Result<Sealed, EnvelopeError> {
    let plain = Zeroizing::new(
        postcard::to_allocvec(&GrantSecrets {
            reply_key: *reply_key,
        })
        .expect("serializes"),
    );
    seal(provider_envelope_key, GRANT_INFO, &grant.binding(), &plain)
}

/// Seal an access bundle (provider side) to the grant's reply key.
pub fn seal_access(
    reply_key: &[u8; 32],
    request_id: RequestId,
    provider_id: ProviderId,
    bundle: &AccessBundle,
) -> Result<AccessSealed, EnvelopeError> {
    let plain = Zeroizing::new(postcard::to_allocvec(bundle).expect("serializes"));
    let aad = AccessSealed::binding(PROTOCOL_VERSION, &request_id, &provider_id);
    Ok(AccessSealed {
        version: PROTOCOL_VERSION,
        request_id,
        provider_id,
        bundle: seal(reply_key, ACCESS_INFO, &aad, &plain)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_contract::backend::TdxRequirement;
    use compute_bridge_contract::protocol::Manifest;

    fn grant(provider: &EnvelopeKey) -> ComputeGrant {
        ComputeGrant::unsealed(
            provider.provider_id(),
            Manifest {
                image: format!("x@sha256:{}", "0".repeat(64)),
                cpu_millicores: 100,
                ram_mib: 64,
                region: None,
                tdx: TdxRequirement::None,
            },
            1,
            2,
        )
    }

    fn bundle() -> AccessBundle {
        AccessBundle {
            host: "127.0.0.1".into(),
            port: 2222,
            user: "w".into(),
            private_key: "KEY".into(),
            host_key: String::new(),
        }
    }

    #[test]
    fn a_grant_opens_only_for_its_provider_and_its_own_fields() {
        let provider = EnvelopeKey::generate();
        let reply = EnvelopeKey::generate();
        let mut g = grant(&provider);
        g.envelope = seal_grant(&provider.public(), &g, &reply.public()).unwrap();
        assert_eq!(provider.open_grant(&g).unwrap(), reply.public());

        // Another provider's key does not open it.
        assert_eq!(
            EnvelopeKey::generate().open_grant(&g),
            Err(EnvelopeError::Open)
        );
        // Moving the envelope to a grant with other fields breaks it.
        let mut moved = g.clone();
        moved.valid_to += 3600;
        assert_eq!(provider.open_grant(&moved), Err(EnvelopeError::Open));
        // Flipping a ciphertext bit breaks it.
        let mut tampered = g.clone();
        tampered.envelope.ciphertext[0] ^= 1;
        assert_eq!(provider.open_grant(&tampered), Err(EnvelopeError::Open));
        // Garbage does not panic.
        let mut junk = g;
        junk.envelope.enc = vec![1, 2, 3];
        assert_eq!(provider.open_grant(&junk), Err(EnvelopeError::Open));
    }

    #[test]
    fn access_opens_with_the_reply_key_only() {
        let reply = EnvelopeKey::generate();
        let (r, p) = (RequestId::random(), ProviderId::random());
        let sealed = seal_access(&reply.public(), r, p, &bundle()).unwrap();
        let opened = reply.open_access(&sealed).unwrap();
        assert_eq!((opened.port, opened.private_key.as_str()), (2222, "KEY"));
        assert!(EnvelopeKey::generate().open_access(&sealed).is_err());
        // Relabelled for another request: refused.
        let mut relabelled = sealed.clone();
        relabelled.request_id = RequestId::random();
        assert!(reply.open_access(&relabelled).is_err());
        // The plaintext key is not in the ciphertext.
        assert!(!sealed.bundle.ciphertext.windows(3).any(|w| w == b"KEY"));
    }

    #[test]
    fn derivation_is_deterministic() {
        let a = EnvelopeKey::derive(&[7; 32]);
        let b = EnvelopeKey::derive(&[7; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), EnvelopeKey::derive(&[8; 32]).public());
    }
}
