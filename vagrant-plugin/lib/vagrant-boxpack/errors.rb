module VagrantPlugins
  module Boxpack
    module Errors
      class BoxpackError < Vagrant::Errors::VagrantError
        error_namespace("vagrant_boxpack.errors")
      end

      class AllowedSignersMissing < BoxpackError
        error_key(:allowed_signers_missing)
      end

      class SshKeygenMissing < BoxpackError
        error_key(:ssh_keygen_missing)
      end

      class SignatureMissing < BoxpackError
        error_key(:signature_missing)
      end

      class SignatureNotAllowed < BoxpackError
        error_key(:signature_not_allowed)
      end

      class SignatureBad < BoxpackError
        error_key(:signature_bad)
      end
    end
  end
end
