begin
  require "vagrant"
rescue LoadError
  raise "The vagrant-boxpack plugin must be run within Vagrant."
end

require "vagrant-boxpack/plugin"
