module VagrantPlugins
  module Boxpack
    class Plugin < Vagrant.plugin("2")
      name "boxpack"
      description <<-DESC
      Checks the OpenSSH signature of each box Vagrant adds (at the box's URL + .sig)
      after its download and before it is added, when allowed signers are set.
      DESC

      config(:boxpack) do
        require_relative "config"
        Config
      end

      # Every box Vagrant adds goes through BoxAdd (`vagrant box add`, `vagrant box update`,
      # and HandleBox in `vagrant up`): the check sits right before it.
      action_hook(:boxpack_signatures, :box_add) do |hook|
        init!
        require_relative "verify_signature"
        hook.before(Vagrant::Action::Builtin::BoxAdd, VerifySignature)
      end

      def self.init!
        return if defined?(@_init)
        I18n.load_path << File.expand_path("../../locales/en.yml", __dir__)
        I18n.reload!
        @_init = true
      end
    end
  end
end
