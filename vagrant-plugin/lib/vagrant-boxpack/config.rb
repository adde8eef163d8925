module VagrantPlugins
  module Boxpack
    class Config < Vagrant.plugin("2", :config)
      # An allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS): when set, each box
      # added must carry a vagrant-box signature by a key it allows. The Vagrantfile's
      # setting wins over VAGRANT_BOXPACK_ALLOWED_SIGNERS; unset, nothing is checked.
      attr_accessor :allowed_signers

      def initialize
        @allowed_signers = UNSET_VALUE
      end

      def finalize!
        @allowed_signers = ENV["VAGRANT_BOXPACK_ALLOWED_SIGNERS"] if @allowed_signers == UNSET_VALUE
        @allowed_signers = nil if @allowed_signers.to_s.empty?
      end
    end
  end
end
