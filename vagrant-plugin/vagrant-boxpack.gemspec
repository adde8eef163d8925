require_relative "lib/vagrant-boxpack/version"

Gem::Specification.new do |s|
  s.name        = "vagrant-boxpack"
  s.version     = VagrantPlugins::Boxpack::VERSION
  s.summary     = "Checks the OpenSSH signature of every box Vagrant adds, before it adds it"
  s.description = "With VAGRANT_BOXPACK_ALLOWED_SIGNERS set (or config.boxpack.allowed_signers), each box " \
                  "`vagrant box add` and `vagrant up` download is checked against its signature at the box's " \
                  "URL + .sig with ssh-keygen -Y verify, and refused unless an allowed signer made it."
  s.authors     = ["boxpack"]
  s.license     = "MIT"
  s.files       = Dir["lib/**/*.rb", "locales/*.yml"]
  s.require_path = "lib"
  s.required_ruby_version = ">= 2.7"
end
